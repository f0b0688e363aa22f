package journal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// segFiles returns the queue's segment paths in order.
func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	fs, err := listSegments(dir, "q")
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.path
	}
	return out
}

// writeSample makes a one-segment journal with items a..e, c removed.
// It returns the offsets of each record in the file.
func writeSample(t *testing.T, dir string) []int64 {
	t.Helper()
	j := openT(t, dir, Options{})
	appendT(t, j, "aaaa", "bbbbbbbbbb", "c", "dd", "eeeee")
	removeT(t, j, 3)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	var offs []int64
	if err := DumpFile(segFiles(t, dir)[0], func(e DumpEntry) error {
		offs = append(offs, e.Offset)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return offs
}

func TestCorruption(t *testing.T) {
	type corruptFunc func(t *testing.T, path string, offs []int64)
	modify := func(f func(b []byte, offs []int64) []byte) corruptFunc {
		return func(t *testing.T, path string, offs []int64) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, f(b, offs), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	lastRec := func(offs []int64) int64 { return offs[len(offs)-1] }
	cases := []struct {
		name       string
		corrupt    corruptFunc
		wantLive   string // after a successful open
		wantOffset int64  // -1: open succeeds; else CorruptError at this record index's offset
		corruptAt  func(offs []int64) int64
		followsAt  func(offs []int64) int64 // the valid record the error names after it
	}{
		{
			name:     "truncate mid last record",
			corrupt:  modify(func(b []byte, offs []int64) []byte { return b[:lastRec(offs)+5] }),
			wantLive: "[aaaa bbbbbbbbbb c dd eeeee]", // the REMOVE of c is lost: c comes back
		},
		{
			name:     "truncate mid frame header",
			corrupt:  modify(func(b []byte, offs []int64) []byte { return b[:lastRec(offs)+3] }),
			wantLive: "[aaaa bbbbbbbbbb c dd eeeee]",
		},
		{
			name: "garbage in the last record",
			corrupt: modify(func(b []byte, offs []int64) []byte {
				b[lastRec(offs)+9] ^= 0xff
				return b
			}),
			wantLive: "[aaaa bbbbbbbbbb c dd eeeee]",
		},
		{
			name: "flipped byte in the middle",
			corrupt: modify(func(b []byte, offs []int64) []byte {
				b[offs[2]+frameHeaderSize+26] ^= 0x01
				return b
			}),
			corruptAt: func(offs []int64) int64 { return offs[2] },
			followsAt: func(offs []int64) int64 { return offs[3] },
		},
		{
			name: "garbage length in the middle",
			corrupt: modify(func(b []byte, offs []int64) []byte {
				b[offs[3]] = 0xfe
				b[offs[3]+3] = 0x7f
				return b
			}),
			corruptAt: func(offs []int64) int64 { return offs[3] },
		},
		{
			name: "zeroed record in the middle",
			corrupt: modify(func(b []byte, offs []int64) []byte {
				for i := offs[2]; i < offs[3]; i++ {
					b[i] = 0
				}
				return b
			}),
			corruptAt: func(offs []int64) int64 { return offs[2] },
		},
		{
			name: "bad magic",
			corrupt: modify(func(b []byte, offs []int64) []byte {
				b[0] = 'X'
				return b
			}),
			corruptAt: func(offs []int64) int64 { return 0 },
		},
		{
			name: "unsupported version",
			corrupt: modify(func(b []byte, offs []int64) []byte {
				b[6] = formatVersion + 1
				return b
			}),
			corruptAt: func(offs []int64) int64 { return 0 },
		},
	}
	torn := map[string]TornTail{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			offs := writeSample(t, dir)
			path := segFiles(t, dir)[0]
			tc.corrupt(t, path, offs)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var logs lockedLog
			if tc.corruptAt == nil {
				res, err := Check(dir, "q")
				if err != nil || res.Torn == nil {
					t.Fatalf("Check: %+v, %v; want a torn tail", res, err)
				}
				torn[tc.name] = *res.Torn
			}
			j, err := Open(dir, "q", Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if tc.corruptAt != nil {
				if err == nil {
					j.Close()
					t.Fatal("Open succeeded on a corrupt journal")
				}
				var ce *CorruptError
				if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
					t.Fatalf("err = %v, want *CorruptError wrapping ErrCorrupt", err)
				}
				if ce.File != path || ce.Offset != tc.corruptAt(offs) {
					t.Fatalf("CorruptError at %s:%d, want %s:%d", ce.File, ce.Offset, path, tc.corruptAt(offs))
				}
				if tc.followsAt != nil && !strings.Contains(ce.Reason, fmt.Sprintf("a valid record follows at offset %d", tc.followsAt(offs))) {
					t.Fatalf("CorruptError %q does not name the valid record at %d", ce.Reason, tc.followsAt(offs))
				}
				after, _ := os.ReadFile(path)
				if string(after) != string(before) {
					t.Fatal("Open changed a corrupt file")
				}
				if _, err := os.Stat(path + brokeExt); err == nil {
					t.Fatal("Open wrote a .broken copy for corruption")
				}
				return
			}
			if err != nil {
				t.Fatalf("Open after torn tail: %v", err)
			}
			defer j.Close()
			// The operator is told where the file was cut and how much went.
			j.Close()
			res := torn[tc.name]
			if !strings.Contains(logs.String(), fmt.Sprintf("offset=%d dropped=%d", res.Offset, res.Size-res.Offset)) {
				t.Fatalf("no warning with offset=%d dropped=%d:\n%s", res.Offset, res.Size-res.Offset, logs.String())
			}
			j = openT(t, dir, Options{})
			if got := fmt.Sprint(datas(readAll(t, j))); got != tc.wantLive {
				t.Fatalf("live = %s, want %s", got, tc.wantLive)
			}
			copyBytes, err := os.ReadFile(path + brokeExt)
			if err != nil {
				t.Fatalf("no .broken copy: %v", err)
			}
			if string(copyBytes) != string(before) {
				t.Fatal(".broken copy differs from the torn file")
			}
			// The journal keeps working after the repair.
			appendT(t, j, "new")
			j.Close()
			j2 := openT(t, dir, Options{})
			defer j2.Close()
			live := datas(readAll(t, j2))
			if live[len(live)-1] != "new" {
				t.Fatalf("append after repair lost: %v", live)
			}
		})
	}
}

func TestCorruptNonLastSegment(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: 256})
	for i := 0; i < 20; i++ {
		appendT(t, j, fmt.Sprintf("item-%02d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxx", i))
	}
	j.Close()
	files := segFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("want several segments, got %d", len(files))
	}
	// Cut the first segment short: only the last may be torn.
	fi, _ := os.Stat(files[0])
	if err := os.Truncate(files[0], fi.Size()-4); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, "q", Options{Logger: quietLogger()})
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.File != files[0] {
		t.Fatalf("err = %v, want CorruptError in %s", err, files[0])
	}
}

func TestBadNames(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"", "../x", "a/b", "a.b", "a+b+c", "sp ace", ".", "~tmp", string(make([]byte, 251))} {
		if _, err := Open(dir, name, Options{}); !errors.Is(err, ErrBadName) {
			t.Errorf("Open(%q): err = %v, want ErrBadName", name, err)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Fatalf("bad names created files: %v", ents)
	}
	for _, name := range []string{"a", "A_b-9", "parent+child"} {
		j, err := Open(dir, name, Options{Logger: quietLogger()})
		if err != nil {
			t.Fatalf("Open(%q): %v", name, err)
		}
		j.Close()
	}
	names, err := Names(dir)
	if err != nil || fmt.Sprint(names) != "[A_b-9 a parent+child]" {
		t.Fatalf("Names = %v, %v", names, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.lock")); err != nil {
		t.Fatalf("lock file: %v", err)
	}
}

// TestLongQueueName: Kestrel allows 250-byte names, longer than a file
// name can take with our suffixes; the files use a shortened base and
// Names still reports the full name.
func TestLongQueueName(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("n", 250)
	longer := strings.Repeat("n", 249) + "m" // same prefix, different hash
	for _, name := range []string{long, longer} {
		j, err := Open(dir, name, Options{Logger: quietLogger()})
		if err != nil {
			t.Fatalf("Open(%d bytes): %v", len(name), err)
		}
		appendT(t, j, name[245:])
		j.Close()
	}
	names, err := Names(dir)
	if err != nil || len(names) != 2 || !(names[0] == long || names[1] == long) {
		t.Fatalf("Names = %v, %v", names, err)
	}
	// A name file that says something else is rewritten at Open.
	nameFile := filepath.Join(dir, fileBase(longer)+nameExt)
	if err := os.WriteFile(nameFile, []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	j, err := Open(dir, longer, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if got := datas(readAll(t, j)); fmt.Sprint(got) != "[nnnnm]" {
		t.Fatalf("reopened long queue: %v", got)
	}
	if b, err := os.ReadFile(nameFile); err != nil || string(b) != longer {
		t.Fatalf("name file after Open: %.20q, %v; want the queue's name", b, err)
	}
	if res, err := Check(dir, longer); err != nil || res.Items != 1 {
		t.Fatalf("Check: %+v %v", res, err)
	}
	if err := j.Delete(); err != nil {
		t.Fatal(err)
	}
	if names, _ := Names(dir); len(names) != 1 || names[0] != long {
		t.Fatalf("after Delete: %v", names)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if len(e.Name()) > 240 {
			t.Fatalf("file name of %d bytes: %s", len(e.Name()), e.Name())
		}
	}
}

// TestTornWhileCreated: a crash while a segment is being created (during
// a roll or a compaction) can leave a last file with no header, a header
// and nothing else, or a START record cut short. Such a file holds no
// record: it is a torn tail, reported by Check without touching anything,
// and removed by Open after a .broken copy is kept; the journal opens with
// every item and keeps working. The same file anywhere but last is
// corruption.
func TestTornWhileCreated(t *testing.T) {
	start := EncodeRecord(nil, &Record{Type: RecStart, ID: 1 << 20})
	badStart := bytes.Clone(start)
	badStart[frameHeaderSize+3] ^= 0x40
	cases := []struct {
		name     string
		contents []byte
	}{
		{"empty", nil},
		{"short header", fileHeader()[:5]},
		{"zeroed header", make([]byte, 4096)}, // preallocated, nothing written
		{"header only", fileHeader()},
		{"header and zeros", append(fileHeader(), make([]byte, 4096)...)},
		{"header and torn START", append(fileHeader(), start[:12]...)},
		{"header and START failing its CRC", append(fileHeader(), badStart...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			j := openT(t, dir, Options{SegmentSize: 256})
			var want []string
			for i := 0; i < 12; i++ {
				want = append(want, fmt.Sprintf("item-%02d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxx", i))
			}
			appendT(t, j, want...)
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			segs, err := listSegments(dir, "q")
			if err != nil || len(segs) < 2 {
				t.Fatalf("want several segments, got %v, %v", segs, err)
			}
			last := segs[len(segs)-1].seq
			torn := filepath.Join(dir, segName("q", last+1))
			if err := os.WriteFile(torn, tc.contents, 0o644); err != nil {
				t.Fatal(err)
			}

			res, err := Check(dir, "q")
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if res.Torn == nil || res.Torn.File != torn || res.Torn.Offset != 0 || res.Torn.Size != int64(len(tc.contents)) {
				t.Fatalf("Check: torn = %+v, want the whole of %s (%d bytes)", res.Torn, torn, len(tc.contents))
			}
			if res.Items != int64(len(want)) || res.Segments != len(segs) {
				t.Fatalf("Check: %d items in %d segments, want %d in %d", res.Items, res.Segments, len(want), len(segs))
			}
			if b, err := os.ReadFile(torn); err != nil || !bytes.Equal(b, tc.contents) {
				t.Fatalf("Check changed the torn file: %v", err)
			}

			j = openT(t, dir, Options{SegmentSize: 256, Logger: quietLogger()}) // warns of the torn segment
			if got := datas(readAll(t, j)); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("after Open: %v, want %v", got, want)
			}
			if _, err := os.Stat(torn); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("torn segment still there after Open: %v", err)
			}
			if b, err := os.ReadFile(torn + brokeExt); err != nil || !bytes.Equal(b, tc.contents) {
				t.Fatalf(".broken copy missing or different: %v", err)
			}
			// It keeps working, rolls included (the torn file's seq is
			// taken again).
			for i := 0; i < 8; i++ {
				s := fmt.Sprintf("more-%02d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxx", i)
				appendT(t, j, s)
				want = append(want, s)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			j = openT(t, dir, Options{SegmentSize: 256})
			defer j.Close()
			if got := datas(readAll(t, j)); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("after appending and reopening: %v, want %v", got, want)
			}
		})
		t.Run(tc.name+" not last", func(t *testing.T) {
			dir := t.TempDir()
			j := openT(t, dir, Options{SegmentSize: 256})
			for i := 0; i < 12; i++ {
				appendT(t, j, fmt.Sprintf("item-%02d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxx", i))
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			segs, err := listSegments(dir, "q")
			if err != nil {
				t.Fatal(err)
			}
			last := segs[len(segs)-1].seq
			torn := filepath.Join(dir, segName("q", last+1))
			if err := os.WriteFile(torn, tc.contents, 0o644); err != nil {
				t.Fatal(err)
			}
			// A whole segment after it (as if the journal went on).
			after := EncodeRecord(fileHeader(), &Record{Type: RecStart, ID: 100})
			if err := os.WriteFile(filepath.Join(dir, segName("q", last+2)), after, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, op := range []string{"Check", "Open"} {
				var err error
				if op == "Check" {
					_, err = Check(dir, "q")
				} else {
					var j *Journal
					if j, err = Open(dir, "q", Options{Logger: quietLogger()}); err == nil {
						j.Close()
					}
				}
				var ce *CorruptError
				if !errors.As(err, &ce) || ce.File != torn {
					t.Fatalf("%s: err = %v, want CorruptError in %s", op, err, torn)
				}
			}
			if b, err := os.ReadFile(torn); err != nil || !bytes.Equal(b, tc.contents) {
				t.Fatalf("the corrupt file was changed: %v", err)
			}
		})
	}
}

// TestNameFileBoundary: names up to maxPlainBase bytes are their own file
// base; one byte more gets a shortened base and a .name file, which is
// rewritten if it no longer holds the name.
func TestNameFileBoundary(t *testing.T) {
	dir := t.TempDir()
	plain := strings.Repeat("p", maxPlainBase)
	long := strings.Repeat("l", maxPlainBase+1)
	for _, name := range []string{plain, long} {
		j, err := Open(dir, name, Options{Logger: quietLogger()})
		if err != nil {
			t.Fatalf("Open(%d bytes): %v", len(name), err)
		}
		appendT(t, j, "x")
		j.Close()
	}
	if fs, err := listSegments(dir, plain); err != nil || len(fs) != 1 {
		t.Fatalf("a %d-byte name is not its own file base: %v %v", len(plain), fs, err)
	}
	if _, err := os.Stat(filepath.Join(dir, plain+nameExt)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a .name file for a plain base: %v", err)
	}
	nameFile := filepath.Join(dir, fileBase(long)+nameExt)
	if b, err := os.ReadFile(nameFile); err != nil || string(b) != long {
		t.Fatalf("%d-byte name: .name holds %q, %v", len(long), b, err)
	}
	if err := os.WriteFile(nameFile, []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	j, err := Open(dir, long, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	if b, err := os.ReadFile(nameFile); err != nil || string(b) != long {
		t.Fatalf("a damaged .name file was not rewritten: %q, %v", b, err)
	}
	if names, err := Names(dir); err != nil || len(names) != 2 {
		t.Fatalf("Names = %d names, %v", len(names), err)
	}
}

// TestReplayRejectsRepeatedAddID: ids only grow; an ADD repeating the id
// before it, with whole records after it, is corruption, not a second item.
func TestReplayRejectsRepeatedAddID(t *testing.T) {
	dir := t.TempDir()
	b := EncodeRecord(fileHeader(), &Record{Type: RecStart, ID: 1})
	b = EncodeRecord(b, &Record{Type: RecAdd, ID: 1, Data: []byte("one")})
	at := int64(len(b))
	b = EncodeRecord(b, &Record{Type: RecAdd, ID: 1, Data: []byte("one again")})
	b = EncodeRecord(b, &Record{Type: RecAdd, ID: 2, Data: []byte("two")})
	path := filepath.Join(dir, segName("q", 1))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, "q", Options{Logger: quietLogger()})
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.File != path || ce.Offset != at {
		t.Fatalf("Open: %v, want CorruptError at %s:%d", err, path, at)
	}
}

// TestRecordsAcrossReadWindow: records are read through a window of
// readWindow bytes; records that straddle its end, and a last record
// bigger than the window that ends exactly at the end of the file, are
// read whole by replay, Check and a cursor.
func TestRecordsAcrossReadWindow(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: 64 << 20})
	var want []string
	// The first ADD (after the 8-byte header and the 32-byte START)
	// ends exactly 8 bytes before the first window does: the next
	// frame's header is the window's last 8 bytes.
	first := readWindow - fileHeaderSize - 32 - frameHeaderSize - (1 + addFixedSize)
	for i, n := range []int{first, readWindow/3 + 5, readWindow/3 + 11, readWindow/3 + 17, 1000, readWindow + 3, readWindow*2 + 1} {
		want = append(want, strings.Repeat(string(rune('a'+i)), n))
	}
	appendT(t, j, want...)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if res, err := Check(dir, "q"); err != nil || res.Torn != nil || res.Items != int64(len(want)) {
		t.Fatalf("Check: %+v, %v", res, err)
	}
	j = openT(t, dir, Options{})
	defer j.Close()
	got := datas(readAll(t, j))
	if len(got) != len(want) {
		t.Fatalf("%d items read back, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("item %d: %d bytes of %q, want %d", i, len(got[i]), got[i][:1], len(want[i]))
		}
	}
}

// countingReaderAt records the reads a frameReader makes of a file.
type countingReaderAt struct {
	f            *os.File
	calls, bytes int64
	maxLen       int
	maxEnd       int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.calls++
	c.bytes += int64(len(p))
	c.maxLen = max(c.maxLen, len(p))
	c.maxEnd = max(c.maxEnd, off+int64(len(p)))
	return c.f.ReadAt(p, off)
}

// TestFrameReaderReadsOnce: the frame reader reads a segment in windows of
// readWindow bytes, each region about once, and asks for nothing past its
// limit (in a live segment, bytes past it are a batch not yet counted).
func TestFrameReaderReadsOnce(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: 64 << 20})
	var items []string
	for i := 0; i < 3000; i++ {
		items = append(items, strings.Repeat("x", i%700))
	}
	appendT(t, j, items...)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(segFiles(t, dir)[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	limit := fi.Size()
	ra := &countingReaderAt{f: f}
	r := frameReader{ra: ra, off: fileHeaderSize, limit: limit}
	n := 0
	for {
		_, _, err := r.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("frame %d: %v", n, err)
		}
		n++
	}
	if ra.maxEnd > limit || ra.maxLen > readWindow {
		t.Fatalf("read up to offset %d (limit %d), %d bytes at once (window %d)", ra.maxEnd, limit, ra.maxLen, readWindow)
	}
	if ra.bytes > limit+64<<10 || ra.calls > limit/readWindow+8 {
		t.Fatalf("%d reads of %d bytes for %d frames in %d bytes", ra.calls, ra.bytes, n, limit)
	}
	t.Logf("%d frames, %d bytes: %d reads of %d bytes", n, limit, ra.calls, ra.bytes)
}

// recordsEnd is where the records of a segment file end: the first
// offset at which no frame decodes, or the end of the file.
func recordsEnd(t *testing.T, path string) (end, size int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	r := frameReader{ra: f, off: fileHeaderSize, limit: st.Size()}
	for {
		_, off, err := r.next()
		if err != nil {
			return off, st.Size()
		}
	}
}

// TestZeroTail: a segment whose records are followed by zeros (what the
// writer's zeroAhead leaves when the process dies, last segment or, dying
// in a roll, the one before it) ends at its last record: no torn tail, no
// .broken copy, no warning, every item; Open trims the zeros. A record
// whose bytes never reached the disk reads as zeros too and goes with them.
func TestZeroTail(t *testing.T) {
	cases := []struct {
		name     string
		zeroFrom func(offs []int64) int // index of the first record zeroed
		last     bool
		want     string
	}{
		{"after the last record", func(offs []int64) int { return len(offs) }, true, "[aaaa bbbbbbbbbb dd eeeee]"},
		{"over the last two records", func(offs []int64) int { return len(offs) - 2 }, true, "[aaaa bbbbbbbbbb c dd]"},
		{"in a segment that is not the last", func(offs []int64) int { return len(offs) }, false, "[aaaa bbbbbbbbbb dd eeeee]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			offs := writeSample(t, dir)
			path := segFiles(t, dir)[0]
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			end := int64(len(b))
			if i := tc.zeroFrom(offs); i < len(offs) {
				end = offs[i]
			}
			b = append(b[:end], make([]byte, 3*4096+8)...)
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if !tc.last {
				next := EncodeRecord(fileHeader(), &Record{Type: RecStart, ID: 6})
				if err := os.WriteFile(filepath.Join(dir, segName("q", 2)), next, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			res, err := Check(dir, "q")
			if err != nil || res.Torn != nil {
				t.Fatalf("Check: %+v, %v; want no torn tail", res, err)
			}
			if err := DumpFile(path, func(DumpEntry) error { return nil }); err != nil {
				t.Fatalf("DumpFile: %v", err)
			}
			var logs lockedLog
			j, err := Open(dir, "q", Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got := fmt.Sprint(datas(readAll(t, j))); got != tc.want {
				t.Fatalf("live = %s, want %s", got, tc.want)
			}
			if fi, err := os.Stat(path); err != nil || fi.Size() != end {
				t.Fatalf("after Open the segment is %v bytes (%v), want trimmed to %d", fi.Size(), err, end)
			}
			if _, err := os.Stat(path + brokeExt); err == nil {
				t.Fatal("Open wrote a .broken copy for a tail of zeros")
			}
			if logs.String() != "" {
				t.Fatalf("Open warned about a tail of zeros:\n%s", logs.String())
			}
			appendT(t, j, "new")
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			j = openT(t, dir, Options{})
			defer j.Close()
			if got := fmt.Sprint(datas(readAll(t, j))); got != strings.TrimSuffix(tc.want, "]")+" new]" {
				t.Fatalf("after an append and a reopen: %s", got)
			}
		})
	}
	// Zeros followed by anything else are not the writer's: torn or
	// corrupt as before (TestCorruption), never read past.
	t.Run("zeros then garbage", func(t *testing.T) {
		dir := t.TempDir()
		writeSample(t, dir)
		path := segFiles(t, dir)[0]
		b, _ := os.ReadFile(path)
		size := int64(len(b))
		b = append(append(b, make([]byte, 4096)...), 0xff)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := Check(dir, "q")
		if err != nil || res.Torn == nil || res.Torn.Offset != size {
			t.Fatalf("Check: %+v, %v; want a torn tail at %d", res, err, size)
		}
	})
}

// TestZeroAhead: under SyncAlways the writer keeps zeros written after its
// records in the active file, so most fsyncs find the blocks written and
// the file's size unchanged; a rolled segment and a closed journal end
// with their last record.
func TestZeroAhead(t *testing.T) {
	for _, sync := range []SyncMode{SyncAlways, SyncNever} {
		t.Run(sync.String(), func(t *testing.T) {
			dir := t.TempDir()
			j := openT(t, dir, Options{Sync: sync, SegmentSize: 64 << 10})
			data := strings.Repeat("x", 100)
			for range 100 {
				appendT(t, j, data)
			}
			active := segFiles(t, dir)
			end, size := recordsEnd(t, active[len(active)-1])
			switch {
			case sync == SyncAlways && size <= end:
				t.Fatalf("records end at %d in a file of %d bytes: want zeros after them", end, size)
			case sync != SyncAlways && size != end:
				t.Fatalf("records end at %d in a file of %d bytes: zeros only under SyncAlways", end, size)
			}
			for range 600 { // past a roll or two
				appendT(t, j, data)
			}
			files := segFiles(t, dir)
			if len(files) < 2 {
				t.Fatalf("%d segments, want a roll", len(files))
			}
			for _, f := range files[:len(files)-1] {
				if end, size := recordsEnd(t, f); end != size {
					t.Fatalf("rolled segment %s: records end at %d of %d bytes", f, end, size)
				}
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			for _, f := range segFiles(t, dir) {
				if end, size := recordsEnd(t, f); end != size {
					t.Fatalf("after Close, %s: records end at %d of %d bytes", f, end, size)
				}
			}
		})
	}
}

// TestCursorPassesZerosInClosedSegment: zeros after a closed segment's
// last record (a roll that could not trim its zeros ahead) end that
// segment for a cursor, which reads on into the next, as replay does.
func TestCursorPassesZerosInClosedSegment(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: 4 << 10})
	defer j.Close()
	var want []string
	for i := 0; len(segFiles(t, dir)) < 3; i++ {
		appendT(t, j, payload(i))
		want = append(want, payload(i))
	}
	f, err := os.OpenFile(segFiles(t, dir)[0], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got := datas(readAll(t, j)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("cursor read %d items, want %d", len(got), len(want))
	}
}

// TestCursorPassesDrainedRoll: a cursor reading the active segment when a
// drained queue rolls it reads on into the next without meeting the zeros
// written ahead in it (the roll trims them before the segment stops being
// the active one, whose reads stop at its last record).
func TestCursorPassesDrainedRoll(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{Sync: SyncAlways, SegmentSize: 64 << 10})
	defer j.Close()
	c := j.Cursor(0)
	defer c.Close()
	var ids []uint64
	for range 300 { // over half a segment: a drain rolls it
		ids = append(ids, appendT(t, j, strings.Repeat("x", 100))...)
	}
	if items, err := c.Next(1, 1<<20); err != nil || len(items) != 1 {
		t.Fatalf("Next: %d items, %v", len(items), err)
	}
	first := segFiles(t, dir)[0]
	removeT(t, j, ids...)
	if err := j.Sync(); err != nil { // after the remove's batch and its roll
		t.Fatal(err)
	}
	if files := segFiles(t, dir); files[0] == first {
		t.Fatalf("no roll after the drain: %v", files)
	}
	appendT(t, j, "after")
	if items, err := c.Next(10, 1<<20); err != nil || fmt.Sprint(datas(items)) != "[after]" {
		t.Fatalf("Next after the roll: %v, %v; want [after]", datas(items), err)
	}
}
