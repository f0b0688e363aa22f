package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kpush/kpush/internal/testproc"
	"github.com/kpush/kpush/queued/journal"
)

func makeJournal(t *testing.T, dir, queue string, data ...string) []uint64 {
	t.Helper()
	j, err := journal.Open(dir, queue, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	items := make([]journal.Item, len(data))
	for i, d := range data {
		items[i] = journal.Item{AddTime: 1700000000000, Data: []byte(d)}
	}
	c, err := j.Append(items)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	ids := make([]uint64, len(items))
	for i := range items {
		ids[i] = items[i].ID
	}
	return ids
}

func segmentOf(t *testing.T, dir, queue string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, queue+".*.kj"))
	if err != nil || len(m) != 1 {
		t.Fatalf("segments of %s: %v %v", queue, m, err)
	}
	return m[0]
}

func TestJournalDumpAndCheck(t *testing.T) {
	dir := t.TempDir()
	ids := makeJournal(t, dir, "jobs", "alpha", "beta", string([]byte{0xff, 0xfe}))
	j, err := journal.Open(dir, "jobs", journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := j.Remove(ids[1])
	c.Wait()
	j.Close()
	makeJournal(t, dir, "other", "x")
	seg := segmentOf(t, dir, "jobs")

	out, errOut, err := testproc.Run(t, nil, "journal", "dump", seg)
	if err != nil {
		t.Fatalf("dump: %v\n%s", err, errOut)
	}
	for _, re := range []string{
		`(?m)^# kpush journal `,
		`(?m)^\s+8  START\s+first_id=1`,
		`(?m)^\s+\d+  ADD\s+id=1 add=2023-11-14T22:13:20.000Z expiry=- size=5 data="alpha"$`,
		`(?m)^\s+\d+  ADD\s+id=3 .* size=2 data=fffe$`,
		`(?m)^\s+\d+  REMOVE\s+2$`,
		`(?m)^# 5 records$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("dump output lacks %s:\n%s", re, out)
		}
	}

	out, errOut, err = testproc.Run(t, nil, "journal", "check", dir)
	if err != nil {
		t.Fatalf("check of a good dir: %v\n%s%s", err, out, errOut)
	}
	if !strings.Contains(out, "ok queue=jobs segments=1 items=2 bytes=7") || !strings.Contains(out, "2 journals checked, 0 corrupt") {
		t.Fatalf("check output:\n%s", out)
	}

	// A torn tail is reported, not failed, and nothing is changed.
	other := segmentOf(t, dir, "other")
	ob, _ := os.ReadFile(other)
	os.WriteFile(other, ob[:len(ob)-5], 0o644)
	out, errOut, err = testproc.Run(t, nil, "journal", "check", dir)
	if err != nil || !strings.Contains(out, fmt.Sprintf("torn tail file=%s offset=40 dropped=35", other)) {
		t.Fatalf("check with a torn tail: %v\n%s%s", err, out, errOut)
	}
	if after, _ := os.ReadFile(other); len(after) != len(ob)-5 {
		t.Fatal("check modified a torn journal")
	}

	// Flip a byte inside the first ADD: check must fail and name it.
	b, _ := os.ReadFile(seg)
	b[40+12] ^= 0x40
	os.WriteFile(seg, b, 0o644)
	out, errOut, err = testproc.Run(t, nil, "journal", "check", dir)
	if err == nil {
		t.Fatalf("check passed a corrupt journal:\n%s", out)
	}
	want := fmt.Sprintf("CORRUPT queue=jobs file=%s offset=40 ", seg)
	if !strings.Contains(out, want) || !strings.Contains(out, "ok queue=other") || !strings.Contains(errOut, "corrupt") {
		t.Fatalf("check output lacks %q:\n%s\n%s", want, out, errOut)
	}
	if _, _, err := testproc.Run(t, nil, "journal", "dump", seg); err == nil {
		t.Fatal("dump of a corrupt file exited 0")
	}
}

func TestJournalImportKestrel(t *testing.T) {
	// A Kestrel journal, byte by byte: ADDX a, ADDX b, ADDX c,
	// REMOVE_TENTATIVE (a open as xid 1), REMOVE (b consumed).
	var k []byte
	addx := func(data string) {
		k = append(k, 2)
		k = binary.LittleEndian.AppendUint32(k, uint32(16+len(data)))
		k = binary.LittleEndian.AppendUint64(k, 1000)
		k = binary.LittleEndian.AppendUint64(k, 0)
		k = append(k, data...)
	}
	addx("a")
	addx("b")
	addx("c")
	k = append(k, 3, 1)
	kpath := filepath.Join(t.TempDir(), "cars")
	os.WriteFile(kpath, k, 0o644)
	dir := t.TempDir()

	out, errOut, err := testproc.Run(t, nil, "journal", "dump", kpath)
	if err != nil || !strings.Contains(out, "# kestrel journal") || !strings.Contains(out, "REMOVE_TENTATIVE") {
		t.Fatalf("dump kestrel: %v\n%s%s", err, out, errOut)
	}

	// A daemon holding the queue blocks the import.
	j, err := journal.Open(dir, "cars", journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, errOut, err = testproc.Run(t, nil, "journal", "import", kpath, "--data-dir", dir, "--queue", "cars")
	if err == nil || !strings.Contains(errOut, "held by another process") {
		t.Fatalf("import into a locked queue: %v\n%s", err, errOut)
	}
	j.Close()

	out, errOut, err = testproc.Run(t, nil, "journal", "import", kpath, "--data-dir", dir, "--queue", "cars")
	if err != nil {
		t.Fatalf("import: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "imported 2 items (1 were open reads) into queue cars") {
		t.Fatalf("import output: %s", out)
	}
	j, err = journal.Open(dir, "cars", journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	cur := j.Cursor(0)
	items, err := cur.Next(10, 1<<20)
	if err != nil || len(items) != 2 || string(items[0].Data) != "a" || string(items[1].Data) != "c" || items[0].AddTime != 1000 {
		t.Fatalf("imported items: %+v, %v", items, err)
	}

	if _, errOut, err := testproc.Run(t, nil, "journal", "import", kpath, "--data-dir", dir, "--queue", "../escape"); err == nil || !strings.Contains(errOut, "invalid queue name") {
		t.Fatalf("import with a bad name: %v %s", err, errOut)
	}
}
