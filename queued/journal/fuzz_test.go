package journal

import (
	"bytes"
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
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if res, err := Check(dir, "q"); err == nil && (res.Items < 0 || res.Bytes < 0) {
			t.Fatalf("negative counts %+v", res)
		}
		DumpFile(path, func(DumpEntry) error { return nil })
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
