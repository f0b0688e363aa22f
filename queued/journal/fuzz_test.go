package journal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func FuzzDecodeRecord(f *testing.F) {
	f.Add(EncodeRecord(nil, &Record{Type: RecAdd, ID: 7, AddTime: 1, Expiry: 2, Data: []byte("hello")}))
	f.Add(EncodeRecord(nil, &Record{Type: RecRemove, Ranges: []IDRange{{1, 5}, {9, 9}}}))
	f.Add(EncodeRecord(nil, &Record{Type: RecClear, ID: 3}))
	f.Add(EncodeRecord(nil, &Record{Type: RecStart, ID: 1, Flags: startCompacted}))
	f.Add([]byte{})
	f.Add(make([]byte, 16))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, n, err := DecodeRecord(b)
		if err != nil {
			if !isDecodeErr(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if n <= 0 || n > len(b) || n%frameAlign != 0 {
			t.Fatalf("size %d for %d input bytes", n, len(b))
		}
		// What decodes re-encodes to the same frame (padding aside).
		enc := EncodeRecord(nil, &rec)
		if len(enc) != n || !bytes.Equal(enc[:8], b[:8]) {
			t.Fatalf("re-encoding differs: %x vs %x", enc, b[:n])
		}
		rec2, n2, err := DecodeRecord(enc)
		if err != nil || n2 != n || rec2.Type != rec.Type || rec2.ID != rec.ID || !bytes.Equal(rec2.Data, rec.Data) || len(rec2.Ranges) != len(rec.Ranges) {
			t.Fatalf("round trip: %+v vs %+v (%v)", rec2, rec, err)
		}
	})
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	cases := []Record{
		{Type: RecAdd, ID: 1<<63 + 5, AddTime: -1, Expiry: 1 << 40, Data: nil},
		{Type: RecAdd, ID: 2, Data: bytes.Repeat([]byte{0}, 1000)},
		{Type: RecRemove, Ranges: []IDRange{{1, 1}, {3, 1 << 50}}},
		{Type: RecClear, ID: 99},
		{Type: RecStart, ID: 12, Flags: 1},
	}
	for _, r := range cases {
		enc := EncodeRecord([]byte("prefix"), &r)
		got, n, err := DecodeRecord(enc[6:])
		if err != nil || n != len(enc)-6 || n%8 != 0 {
			t.Fatalf("%v: n=%d err=%v", r.Type, n, err)
		}
		if got.Type != r.Type || got.ID != r.ID || got.AddTime != r.AddTime || got.Expiry != r.Expiry || got.Flags != r.Flags || !bytes.Equal(got.Data, r.Data) || len(got.Ranges) != len(r.Ranges) {
			t.Fatalf("round trip %+v -> %+v", r, got)
		}
		// Any single flipped bit is caught.
		for i := 0; i < n; i++ {
			bad := bytes.Clone(enc[6:])
			bad[i] ^= 0x10
			if _, _, err := DecodeRecord(bad); err == nil && i < 8+payloadSize(&r) {
				t.Fatalf("%v: flipped byte %d not detected", r.Type, i)
			}
		}
	}
}

// FuzzReplaySegment feeds arbitrary bytes to replay (read-only Check) and
// dump as a segment file: they return a result or an error, never panic.
func FuzzReplaySegment(f *testing.F) {
	seg := fileHeader()
	seg = EncodeRecord(seg, &Record{Type: RecStart, ID: 1})
	seg = EncodeRecord(seg, &Record{Type: RecAdd, ID: 1, Data: []byte("x")})
	seg = EncodeRecord(seg, &Record{Type: RecRemove, Ranges: []IDRange{{1, 1}}})
	f.Add(seg)
	f.Add(seg[:len(seg)-3])
	f.Add([]byte("KPJRNL\x01\x00"))
	dir := f.TempDir()
	path := filepath.Join(dir, segName("q", 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, name := range []string{path, path + brokeExt} {
			if err := os.Remove(name); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		DumpFile(path, func(DumpEntry) error { return nil })
		res, cerr := Check(dir, "q")
		if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, b) {
			t.Fatalf("Check changed the file (%v)", err)
		}
		if cerr == nil && (res.Items < 0 || res.Bytes < 0) {
			t.Fatalf("negative counts %+v", res)
		}
		// Open agrees with Check: what Check calls corrupt does not open
		// (and is left as it was), what it reads opens with the same items.
		j, oerr := Open(dir, "q", Options{Logger: quietLogger()})
		if cerr != nil {
			if oerr == nil {
				j.Close()
				t.Fatalf("Check: %v, but Open succeeded", cerr)
			}
			if errors.Is(cerr, ErrCorrupt) != errors.Is(oerr, ErrCorrupt) {
				t.Fatalf("Check: %v; Open: %v", cerr, oerr)
			}
			if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, b) {
				t.Fatalf("Open changed a file it refused (%v)", err)
			}
			return
		}
		if oerr != nil {
			t.Fatalf("Check: %+v, but Open: %v", res, oerr)
		}
		defer j.Close()
		items := readAll(t, j)
		if int64(len(items)) != res.Items || j.Stats().Items != res.Items {
			t.Fatalf("Open reads %d items (stats %d), Check counted %d", len(items), j.Stats().Items, res.Items)
		}
		if res.Torn != nil {
			if _, err := os.Stat(path + brokeExt); err != nil {
				t.Fatalf("torn tail %+v repaired without a .broken copy: %v", res.Torn, err)
			}
		}
	})
}

// FuzzJournalRoundTrip drives a journal with small segments (so it rolls,
// drops and compacts) through a sequence of appends, removes, flushes,
// reopens and crashes read from the input, and checks after every reopen
// that it holds exactly the items a plain ordered map says it should.
func FuzzJournalRoundTrip(f *testing.F) {
	f.Add([]byte{0, 3, 9, 1, 0, 4, 0, 2, 20, 2, 1, 5, 3, 0, 4})
	f.Add([]byte{0, 3, 200, 0, 3, 200, 0, 3, 200, 1, 0, 1, 0, 5, 0, 3, 1, 4, 2, 7, 5})
	f.Add(bytes.Repeat([]byte{0, 2, 50, 1, 1}, 40))
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 120 {
			ops = ops[:120]
		}
		dir := t.TempDir()
		opts := Options{SegmentSize: 512, Sync: SyncNever}
		j := openT(t, dir, opts)
		defer func() { j.Close() }()
		type entry struct {
			id   uint64
			data string
		}
		var model []entry // live items in id order
		arg := func(i *int) int {
			*i++
			if *i < len(ops) {
				return int(ops[*i])
			}
			return 0
		}
		check := func(when string) {
			t.Helper()
			got := readAll(t, j)
			if len(got) != len(model) || j.Stats().Items != int64(len(model)) {
				t.Fatalf("%s: %d items (stats %d), want %d", when, len(got), j.Stats().Items, len(model))
			}
			for k, it := range got {
				if it.ID != model[k].id || string(it.Data) != model[k].data {
					t.Fatalf("%s: item %d is %d %q, want %d %q", when, k, it.ID, it.Data, model[k].id, model[k].data)
				}
			}
		}
		for i := 0; i < len(ops); i++ {
			switch ops[i] % 6 {
			case 0: // append 1-4 items
				n, size := arg(&i)%4+1, arg(&i)
				var data []string
				for k := 0; k < n; k++ {
					data = append(data, fmt.Sprintf("%d-%s", i, bytes.Repeat([]byte{'a' + byte(k)}, size)))
				}
				for k, id := range appendT(t, j, data...) {
					model = append(model, entry{id, data[k]})
				}
			case 1: // remove one
				if len(model) > 0 {
					k := arg(&i) % len(model)
					removeT(t, j, model[k].id)
					model = append(model[:k], model[k+1:]...)
				}
			case 2: // remove every other item from a point on
				if len(model) > 0 {
					var ids []uint64
					var kept []entry
					from := arg(&i) % len(model)
					for k, e := range model {
						if k >= from && (k-from)%2 == 0 {
							ids = append(ids, e.id)
						} else {
							kept = append(kept, e)
						}
					}
					removeT(t, j, ids...)
					model = kept
				}
			case 3: // flush, keeping one item (an open read) or none
				var keep []uint64
				var kept []entry
				if a := arg(&i); len(model) > 0 && a%2 == 1 {
					e := model[a%len(model)]
					keep, kept = []uint64{e.id}, []entry{e}
				}
				c, err := j.ClearExcept(keep...)
				if err == nil {
					err = c.Wait()
				}
				if err != nil {
					t.Fatalf("ClearExcept: %v", err)
				}
				model = kept
			case 4: // close and reopen
				if err := j.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				j = openT(t, dir, opts)
				check("after reopen")
			case 5: // crash (every commit was waited for) and reopen
				j.abandon()
				j = openT(t, dir, Options{SegmentSize: opts.SegmentSize, Sync: opts.Sync, Logger: quietLogger()}) // may repair
				check("after crash")
			}
		}
		check("at the end")
	})
}

// FuzzKestrel: arbitrary bytes as a Kestrel journal never panic the
// replay, and whatever replays has no more items than were added.
func FuzzKestrel(f *testing.F) {
	f.Add([]byte{2, 17, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'x', 3, 5, 1, 0, 0, 0})
	f.Add([]byte{8, 1, 0, 0, 0, 1, 0, 0, 0})
	path := filepath.Join(f.TempDir(), "kestrel")
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 0 && b[0] > kOpStateDump {
			b[0] %= kOpStateDump + 1
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := ReplayKestrel(path)
		if err == nil && len(res.Items) > len(b) {
			t.Fatalf("%d items from %d bytes", len(res.Items), len(b))
		}
	})
}
