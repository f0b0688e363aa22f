package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/kpush/kpush/internal/testproc"
	"github.com/kpush/kpush/push"
)

// The documentation's commands must run as printed. TestDocCommandsRun runs
// every ```sh block of the README and of docs/, examples/ and bench/, every
// command kpush up's banner prints, and every message of the README and
// docs/message.md, each against a fresh `kpush up` (the README's first
// command) on its documented default addresses, and checks that what they
// enqueued was delivered: no dead token, no failed message.
//
// Fixed addresses (127.0.0.1:22133, :2197, :4004) are what the docs print,
// so each run has a network namespace of its own (unshare: no other test
// can hold those ports, and everything started in it ends with it), and a
// copy of the repository as its working directory.
//
// A block is skipped only when the line before its fence says why:
//
//	<!-- not run: REASON -->            placeholders, other machines, benchmarks
//	<!-- runs until stopped -->         a daemon: it must still be running after 5 s
//	<!-- without kpush up -->           it starts its own servers on kpush up's ports
//
// (the last two may be combined: "runs until stopped, without kpush up").
// One tolerance: `go run ./cmd/kpush ARGS` runs the kpush under test and
// `go install ./cmd/kpush` does nothing, since that kpush is on PATH; every
// other go command is Go's own.

// docBlock is one fenced block of a markdown file.
type docBlock struct {
	file      string
	line      int // of the opening fence
	text      string
	notRun    string // the reason, when it is not run
	daemon    bool
	withoutUp bool
}

func (b docBlock) String() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

var (
	fenceRE     = regexp.MustCompile("^( *)```([a-z]*)\\s*$")
	directiveRE = regexp.MustCompile(`^\s*<!--\s*(.*?)\s*-->\s*$`)
)

// docBlocks returns the fenced blocks of lang in the markdown file.
func docBlocks(t *testing.T, root, file, lang string) []docBlock {
	t.Helper()
	f, err := os.Open(filepath.Join(root, file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		blocks []docBlock
		cur    *docBlock
		indent string
		prev   string
		num    int
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		num++
		line := sc.Text()
		if m := fenceRE.FindStringSubmatch(line); m != nil {
			switch {
			case cur != nil && m[2] == "" && m[1] == indent:
				blocks = append(blocks, *cur)
				cur = nil
			case cur == nil && m[2] == lang:
				cur = &docBlock{file: file, line: num}
				indent = m[1]
				if d := directiveRE.FindStringSubmatch(prev); d != nil {
					applyDirective(t, cur, d[1])
				}
			case cur == nil:
				cur, indent = &docBlock{file: "(other)"}, m[1] // another language: skip its lines
			}
			prev = line
			continue
		}
		if cur != nil && cur.file != "(other)" {
			cur.text += strings.TrimPrefix(line, indent) + "\n"
		}
		prev = line
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	var out []docBlock
	for _, b := range blocks {
		if b.file != "(other)" {
			out = append(out, b)
		}
	}
	return out
}

func applyDirective(t *testing.T, b *docBlock, d string) {
	if reason, ok := strings.CutPrefix(d, "not run:"); ok {
		if b.notRun = strings.TrimSpace(reason); b.notRun == "" {
			t.Errorf("%s: <!-- not run: --> without a reason", b)
		}
		return
	}
	for _, part := range strings.Split(d, ",") {
		switch strings.TrimSpace(part) {
		case "runs until stopped":
			b.daemon = true
		case "without kpush up":
			b.withoutUp = true
		default:
			t.Errorf("%s: unknown directive %q before a block (want not run: REASON, runs until stopped, without kpush up)", b, part)
		}
	}
}

// docFiles are the markdown files whose blocks run.
func docFiles(t *testing.T, root string) []string {
	files := []string{"README.md"}
	for _, pattern := range []string{"docs/*.md", "examples/*.md", "bench/*.md"} {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range m {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
	}
	return files
}

// docEnv is the world the commands run in.
type docEnv struct {
	root   string // the repository
	work   string // its copy, every run's working directory
	bin    string // kpush and the go shim, first on PATH
	logs   string
	driver string
	runs   int
}

func newDocEnv(t *testing.T) *docEnv {
	for _, tool := range []string{"bash", "unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: the doc test runs each block in its own network namespace (util-linux's unshare, iproute2's ip; scripts/test installs them)", tool)
		}
	}
	realGo, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	_, file, _, _ := runtime.Caller(0)
	e := &docEnv{root: filepath.Join(filepath.Dir(file), "..", ".."), work: t.TempDir(), bin: t.TempDir(), logs: t.TempDir()}
	copyRepo(t, e.root, e.work)
	kpush, err := os.ReadFile(testproc.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	write := func(path, content string, mode os.FileMode) {
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(e.bin, "kpush"), string(kpush), 0o755)
	write(filepath.Join(e.bin, "go"), fmt.Sprintf(goShim, realGo), 0o755)
	e.driver = filepath.Join(e.bin, "driver.sh")
	write(e.driver, docDriver, 0o755)
	return e
}

// goShim: the one tolerance (see above).
const goShim = `#!/usr/bin/env bash
if [[ "${1:-}" == run && "${2:-}" == ./cmd/kpush ]]; then shift 2; exec kpush "$@"; fi
if [[ "${1:-}" == install && "${2:-}" == ./cmd/kpush && $# == 2 ]]; then exit 0; fi
exec %q "$@"
`

// docDriver runs one step inside its namespaces: `driver.sh MODE WITH_UP
// STEP_DIR`, MODE block (STEP_DIR/cmd.sh must exit 0), daemon (it must
// still run after 5 s), banner (run the lines kpush up's banner indents by
// four spaces), messages (kpush enqueue --file STEP_DIR/messages.jsonl).
// With WITH_UP=1 it first starts `go run ./cmd/kpush up`, and afterwards
// waits for the queue to drain and writes up's last status line to
// STEP_DIR/status. When the driver, PID 1 of its namespace, exits, every
// process it started ends with it.
const docDriver = `#!/usr/bin/env bash
set -u
mode=$1 with_up=$2 step=$3
ip link set lo up
# kpush up prints its banner once all its listeners are open.
up_ready() { grep -q 'From another terminal' "$step/up.out" 2>/dev/null; }
status() { grep '^delivered=' "$step/up.out" | tail -n 1; }
if [[ $with_up == 1 ]]; then
	go run ./cmd/kpush up >"$step/up.out" 2>"$step/up.err" &
	up=$!
	for ((i = 0; i < 600; i++)); do
		up_ready && break
		kill -0 $up 2>/dev/null || { echo "kpush up exited: $(cat "$step/up.err")" >"$step/out"; echo 99 >"$step/rc"; exit 0; }
		sleep 0.1
	done
	up_ready || { echo "kpush up not ready after 60 s" >"$step/out"; echo 98 >"$step/rc"; exit 0; }
fi
case $mode in
block)
	timeout 300 bash -e -o pipefail "$step/cmd.sh" >"$step/out" 2>&1
	echo $? >"$step/rc" ;;
daemon)
	bash -e -o pipefail "$step/cmd.sh" >"$step/out" 2>&1 &
	d=$!
	sleep 5
	if kill -0 $d 2>/dev/null; then echo 0 >"$step/rc"; else wait $d; echo "exited with $? within 5 s" >>"$step/out"; echo 97 >"$step/rc"; fi ;;
banner)
	rc=0
	grep '^    [^ ]' "$step/up.out" | sed 's/^    //' >"$step/banner-commands"
	while IFS= read -r line; do
		echo "\$ $line" >>"$step/out"
		timeout 120 bash -e -o pipefail -c "$line" >>"$step/out" 2>&1 </dev/null || { echo "exit status $?" >>"$step/out"; rc=1; }
	done <"$step/banner-commands"
	echo $rc >"$step/rc" ;;
messages)
	kpush enqueue --file "$step/messages.jsonl" >"$step/out" 2>&1
	echo $? >"$step/rc" ;;
esac
if [[ $with_up == 1 ]]; then
	# Wait for the worker to settle: nothing in flight, nothing waiting,
	# the same status for a second.
	last="" same=0
	for ((i = 0; i < 600 && same < 5; i++)); do
		sleep 0.2
		s=$(status)
		if [[ -n "$s" && "$s" == "$last" && "$s" == *" in_flight=0 "* && "$s" == *" backlog=0 "* ]]; then
			same=$((same + 1))
		else
			same=0
		fi
		last=$s
	done
	status >"$step/status"
fi
`

// run runs one step and returns its output, the status line of its
// kpush up (empty without one), and whether it succeeded.
func (e *docEnv) run(t *testing.T, mode string, withUp bool, script string, files map[string]string) (out, status string, ok bool) {
	t.Helper()
	e.runs++
	step := filepath.Join(e.logs, strconv.Itoa(e.runs))
	if err := os.MkdirAll(step, 0o755); err != nil {
		t.Fatal(err)
	}
	files["cmd.sh"] = script
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(step, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	up := "0"
	if withUp {
		up = "1"
	}
	cmd := exec.Command("unshare", "--net", "--pid", "--fork", "--mount-proc", "--map-root-user", "bash", e.driver, mode, up, step)
	cmd.Dir = e.work
	cmd.Env = append(os.Environ(), "PATH="+e.bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("driver: %v\n%s", err, b)
	}
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(step, name))
		return string(b)
	}
	out = read("out")
	if withUp {
		status = strings.TrimSpace(read("status"))
		out += "\n--- kpush up's output:\n" + read("up.out") + read("up.err")
	}
	return out, status, strings.TrimSpace(read("rc")) == "0"
}

var statusRE = regexp.MustCompile(`^delivered=(\d+) dead_tokens=(\d+) failed=(\d+) requeued=(\d+) in_flight=0 backlog=0 `)

// checkDelivered fails unless the status line says everything enqueued was
// delivered (want: how many tokens, or -1 for any number).
func checkDelivered(t *testing.T, status string, want int) {
	t.Helper()
	m := statusRE.FindStringSubmatch(status)
	if m == nil {
		t.Errorf("kpush up did not settle: last status %q", status)
		return
	}
	if m[2] != "0" || m[3] != "0" || m[4] != "0" {
		t.Errorf("not everything was delivered: %s", status)
	}
	if got, _ := strconv.Atoi(m[1]); want >= 0 && got != want {
		t.Errorf("delivered %d tokens, want %d: %s", got, want, status)
	}
}

func TestDocCommandsRun(t *testing.T) {
	e := newDocEnv(t)
	var notRun []string
	for _, file := range docFiles(t, e.root) {
		for _, b := range docBlocks(t, e.root, file, "sh") {
			if b.notRun != "" {
				notRun = append(notRun, fmt.Sprintf("%s (%s)", b, b.notRun))
				continue
			}
			t.Run(b.String(), func(t *testing.T) {
				mode := "block"
				if b.daemon {
					mode = "daemon"
				}
				out, status, ok := e.run(t, mode, !b.withoutUp, b.text, map[string]string{})
				if !ok {
					t.Fatalf("the block failed:\n%s\n--- output:\n%s", b.text, out)
				}
				if !b.withoutUp {
					checkDelivered(t, status, -1)
				}
				if t.Failed() {
					t.Logf("block:\n%s\n--- output:\n%s", b.text, out)
				}
			})
		}
	}
	t.Logf("not run, as their markers say: %s", strings.Join(notRun, "; "))

	t.Run("kpush up's banner", func(t *testing.T) {
		out, status, ok := e.run(t, "banner", true, "", map[string]string{})
		if !ok {
			t.Fatalf("a command of the banner failed:\n%s", out)
		}
		if n := strings.Count(out, "\n$ "); n < 4 {
			t.Errorf("ran %d banner commands, want at least 4 (two enqueues, a raw set, a push):\n%s", n, out)
		}
		// Two enqueues and the raw set: three tokens through the queue.
		checkDelivered(t, status, 3)
		if t.Failed() {
			t.Log(out)
		}
	})

	t.Run("messages", func(t *testing.T) {
		var lines []string
		tokens := 0
		for _, file := range []string{"README.md", "docs/message.md"} {
			for _, b := range docBlocks(t, e.root, file, "json") {
				var buf bytes.Buffer
				if err := json.Compact(&buf, []byte(b.text)); err != nil {
					t.Errorf("%s: not one JSON value: %v", b, err)
					continue
				}
				m, err := push.ParseMessage(buf.Bytes())
				if err != nil {
					t.Errorf("%s: %v", b, err)
					continue
				}
				tokens += len(m.Tokens) + len(m.FCMTokens)
				lines = append(lines, buf.String())
			}
		}
		if len(lines) < 5 {
			t.Fatalf("found %d example messages, want the README's and docs/message.md's", len(lines))
		}
		out, status, ok := e.run(t, "messages", true, "", map[string]string{"messages.jsonl": strings.Join(lines, "\n") + "\n"})
		if !ok {
			t.Fatalf("kpush enqueue of the example messages failed:\n%s", out)
		}
		checkDelivered(t, status, tokens)
		if t.Failed() {
			t.Log(out)
		}
	})
}

// copyRepo copies the repository's files (not .git, nor what runs leave).
func copyRepo(t *testing.T, from, to string) {
	t.Helper()
	skip := map[string]bool{".git": true, "bench-results": true, "data": true}
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() && skip[rel] {
			return filepath.SkipDir
		}
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, src); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestNoReferenceLeavesTheRepository: the repository stands alone. No file
// climbs out of it with a relative path, names a markdown file the
// repository does not have (the project's contracts are restated in docs/,
// and code cites docs/... sections), or links out of it.
func TestNoReferenceLeavesTheRepository(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	climb := regexp.MustCompile(`(?:\.\./)+[\w.-]*`)
	// A markdown file name, not a shell variable's ($STAMP.md).
	mdName := regexp.MustCompile(`(?:^|[^\w$-])([\w-]+\.md)\b`)
	link := regexp.MustCompile(`\]\(([^)#\s]+)`)
	haveMD := map[string]bool{}
	if err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Ext(path) == ".md" {
			haveMD[d.Name()] = true
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel == ".git" || rel == "bench-results" || rel == "data" {
				return filepath.SkipDir
			}
			return nil
		}
		ext := filepath.Ext(path)
		if !map[string]bool{".go": true, ".md": true, ".sh": true, ".yml": true, ".yaml": true, ".conf": true, ".py": true, ".service": true, "": true}[ext] {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil || bytes.IndexByte(b, 0) >= 0 {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, m := range climb.FindAllString(line, -1) {
				// Climbing out of the file's folder is fine when it names
				// a top-level path of the repository (a comment written
				// from a subfolder: "../../docs").
				if _, err := os.Stat(filepath.Join(root, strings.TrimLeft(m, "./"))); err == nil && strings.TrimLeft(m, "./") != "" {
					continue
				}
				if r, err := filepath.Rel(root, filepath.Join(filepath.Dir(path), m)); err != nil || strings.HasPrefix(r, "..") {
					t.Errorf("%s:%d: %q points outside the repository: %s", rel, i+1, m, strings.TrimSpace(line))
				}
			}
			for _, sm := range mdName.FindAllStringSubmatch(line, -1) {
				if m := sm[1]; !haveMD[m] {
					t.Errorf("%s:%d: %s is not a file of the repository (restate what it says in docs/): %s", rel, i+1, m, strings.TrimSpace(line))
				}
			}
			if ext != ".md" {
				continue
			}
			for _, l := range link.FindAllStringSubmatch(line, -1) {
				target := l[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				abs := filepath.Clean(filepath.Join(filepath.Dir(path), target))
				if r, err := filepath.Rel(root, abs); err != nil || strings.HasPrefix(r, "..") {
					t.Errorf("%s:%d: link %s leaves the repository", rel, i+1, target)
				} else if _, err := os.Stat(abs); err != nil {
					t.Errorf("%s:%d: link %s: %v", rel, i+1, target, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
