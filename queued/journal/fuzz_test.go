package journal

import (
	"bytes"
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
