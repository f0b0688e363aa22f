package main

import (
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kpush/kpush/internal/testproc"
)

// walkCommands calls fn for cmd and every command below it.
func walkCommands(cmd *cobra.Command, fn func(*cobra.Command)) {
	fn(cmd)
	for _, sub := range cmd.Commands() {
		walkCommands(sub, fn)
	}
}

// TestFlagsAgree walks every subcommand, so flags added later are covered:
// a flag name is one concept, so wherever two commands have a flag of the
// same name, it must have the same type (--servers is a list everywhere, not
// a string in one command and a list in another).
func TestFlagsAgree(t *testing.T) {
	type use struct{ cmd, typ string }
	uses := map[string][]use{}
	walkCommands(rootCmd, func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			uses[f.Name] = append(uses[f.Name], use{c.CommandPath(), f.Value.Type()})
		})
	})
	if len(uses["servers"]) < 3 {
		t.Fatalf("--servers found on %v: the walk missed commands", uses["servers"])
	}
	for name, us := range uses {
		for _, u := range us[1:] {
			if u.typ != us[0].typ {
				t.Errorf("--%s is a %s in %q but a %s in %q: one name, one type", name, us[0].typ, us[0].cmd, u.typ, u.cmd)
			}
		}
	}
}

// TestFlagAliases checks that every old spelling parses as the flag that
// replaced it and is not listed in help.
func TestFlagAliases(t *testing.T) {
	if len(flagAliases) == 0 {
		t.Fatal("no aliases registered")
	}
	for cmd, aliases := range flagAliases {
		for old, current := range aliases {
			t.Run(cmd.Name()+"/"+old, func(t *testing.T) {
				fs := cmd.Flags()
				f := fs.Lookup(current)
				if f == nil {
					t.Fatalf("alias --%s points at --%s, which %s does not have", old, current, cmd.Name())
				}
				if got := fs.Lookup(old); got != f {
					t.Fatalf("--%s does not resolve to --%s", old, current)
				}
				if strings.Contains(cmd.UsageString(), "--"+old+" ") {
					t.Errorf("help lists the old spelling --%s", old)
				}
			})
		}
	}
}

// TestAliasesParse runs the old spellings through the real command lines.
func TestAliasesParse(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		flag  string
		value string
	}{
		{[]string{"worker", "--summary-interval", "3s"}, "status-interval", "3s"},
		{[]string{"bench", "--addr", "10.0.0.1:22133"}, "servers", "[10.0.0.1:22133]"},
		{[]string{"apns-sim", "--topic", "com.a", "--topic", "com.b"}, "allow-topic", "[com.a,com.b]"},
	} {
		cmd, rest, err := rootCmd.Find(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got := cmd.Flags().Lookup(tc.flag).Value.String(); got != tc.value {
			t.Errorf("%v: --%s = %s, want %s", tc.args, tc.flag, got, tc.value)
		}
	}
}

func TestServerAddrs(t *testing.T) {
	got, err := serverAddrs([]string{" q1:22133", "", "localhost", "10.0.0.2", "[::1]:9"})
	want := []string{"q1:22133", "localhost:22133", "10.0.0.2:22133", "[::1]:9"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("serverAddrs = %v, %v; want %v", got, err, want)
	}
	if _, err := serverAddrs([]string{" ", ""}); err == nil || !strings.Contains(err.Error(), "at least one") {
		t.Fatalf("no servers: err %v, want one asking for a server", err)
	}
}

func TestParseDataFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		key  string
		want string // fmt of the value, with its Go type
	}{
		{"order=42", "order", `string "42"`},
		{"order:=42", "order", `json.Number "42"`},
		{"ok:=true", "ok", `bool true`},
		{`ids:=[1,2]`, "ids", `[]interface {} [1 2]`},
		{`name:="x"`, "name", `string "x"`},
		{"url=http://a/b?c:=d", "url", `string "http://a/b?c:=d"`},
		{"empty=", "empty", `string ""`},
	} {
		k, v, err := parseDataFlag(tc.in)
		if got := fmt.Sprintf("%T %q", v, v); err != nil || k != tc.key || (got != tc.want && fmt.Sprintf("%T %v", v, v) != tc.want) {
			t.Errorf("parseDataFlag(%q) = %q, %s, %v; want %q, %s", tc.in, k, got, err, tc.key, tc.want)
		}
	}
	for _, bad := range []string{"novalue", "=v", "n:=", "n:={", "n:=1 2", "n:=[1]x"} {
		if _, _, err := parseDataFlag(bad); err == nil || !isUsageError(err) {
			t.Errorf("parseDataFlag(%q): err %v, want a usage error", bad, err)
		}
	}
}

func TestEditDistanceSuggestions(t *testing.T) {
	for _, tc := range []struct{ a, b string }{{"servrs", "servers"}, {"summary-intervl", ""}, {"concurency", "concurrency"}, {"queu", "queue"}} {
		cmd, _, _ := rootCmd.Find([]string{"enqueue"})
		if got := nearestFlag(cmd, tc.a); got != tc.b {
			t.Errorf("nearestFlag(enqueue, %q) = %q, want %q", tc.a, got, tc.b)
		}
	}
}

// TestCommandLineMistakes: each mistake exits 2 with one line saying what
// is wrong and what to type instead.
func TestCommandLineMistakes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frob"}, `unknown command "frob" for "kpush"`},
		{[]string{"journal", "verify"}, `unknown command "verify" for "kpush journal"; did you mean "check"?`},
		{[]string{"ping"}, "ping: what should answer?"},
		{[]string{"drain"}, "drain: missing HOST:PORT (usage: kpush drain HOST:PORT [flags])"},
		{[]string{"journal", "check", "a", "b"}, "journal check: accepts 1 arg(s), received 2 (usage: kpush journal check <data-dir> [flags])"},
		{[]string{"up", "--statu-interval", "1s"}, "unknown flag: --statu-interval; did you mean --status-interval?"},
		{[]string{"enqueue", "--concurrency", "many"}, `invalid argument "many" for "--concurrency"`},
	} {
		_, stderr, err := testproc.Run(t, nil, tc.args...)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("kpush %v: %v, stderr %q; want exit status 2 and one line with %q", tc.args, err, stderr, tc.want)
		}
	}
	// A command group without a subcommand shows its help and succeeds.
	if stdout, _, err := testproc.Run(t, nil, "journal"); err != nil || !strings.Contains(stdout, "Available Commands") {
		t.Errorf("kpush journal: %v, stdout %q; want its help", err, stdout)
	}
}

// TestAPNSConnectionsHelp: the help of --apns-connections shows the
// default each command applies: worker and up size the connections from
// --concurrency, push uses a fixed number.
func TestAPNSConnectionsHelp(t *testing.T) {
	want := map[string]string{
		"worker": "(default: one per 1,000 of --concurrency)",
		"up":     "(default: one per 1,000 of --concurrency)",
		"push":   "(default 1)",
	}
	seen := 0
	walkCommands(rootCmd, func(c *cobra.Command) {
		w, ok := want[c.Name()]
		if !ok {
			return
		}
		seen++
		var line string
		for _, l := range strings.Split(c.LocalFlags().FlagUsages(), "\n") {
			if strings.Contains(l, "--apns-connections") {
				line = l
			}
		}
		if !strings.HasSuffix(strings.TrimSpace(line), w) || strings.Count(line, "default") != 1 {
			t.Errorf("%s: --apns-connections help %q, want one default, %q", c.Name(), strings.TrimSpace(line), w)
		}
	})
	if seen != len(want) {
		t.Fatalf("found %d of the commands %v", seen, want)
	}
}
