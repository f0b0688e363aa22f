package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kj builds a Kestrel journal byte by byte, in Kestrel's format (docs/journal.md, "Kestrel journals").
type kj []byte

func (k kj) i32(v int32) kj { return binary.LittleEndian.AppendUint32(k, uint32(v)) }
func (k kj) i64(v int64) kj { return binary.LittleEndian.AppendUint64(k, uint64(v)) }

func (k kj) add(data string, expirySec int32) kj {
	k = append(k, kOpAdd)
	return append(k.i32(int32(4+len(data))).i32(expirySec), data...)
}

func (k kj) addx(data string, addMs, expMs int64) kj {
	k = append(k, kOpAddX)
	return append(k.i32(int32(16+len(data))).i64(addMs).i64(expMs), data...)
}

func (k kj) addXID(xid int32, data string) kj {
	k = append(k, kOpAddXID)
	return append(k.i32(xid).i32(int32(16+len(data))).i64(5).i64(0), data...)
}

func (k kj) op(op byte, args ...int32) kj {
	k = append(k, op)
	for _, a := range args {
		k = k.i32(a)
	}
	return k
}

func TestReplayKestrel(t *testing.T) {
	cases := []struct {
		name     string
		journal  kj
		want     string
		wantOpen int
		torn     bool
		corrupt  bool
	}{
		{
			name:    "old ADD and ADDX with REMOVE",
			journal: kj{}.add("a", 0).addx("b", 1000, 0).add("c", 2000000000).op(kOpRemove),
			want:    "[b c]",
		},
		{
			name: "transactions: confirm, abort, still open",
			journal: kj{}.addx("a", 1, 0).addx("b", 2, 0).addx("c", 3, 0).addx("d", 4, 0).
				op(kOpRemoveTentative). // a -> xid 1
				op(kOpRemoveTentative). // b -> xid 2
				op(kOpRemoveTentative). // c -> xid 3
				op(kOpConfirmRemove, 1).
				op(kOpUnremove, 2), // b back at the head; c stays open
			want:     "[c b d]",
			wantOpen: 1,
		},
		{
			name: "rewritten journal: SAVE_XID, ADD_XID + REMOVE_TENTATIVE, items",
			journal: kj{}.op(kOpSaveXID, 41).addXID(40, "open-one").op(kOpRemoveTentative).
				addx("x", 1, 0).addx("y", 1, 0).
				op(kOpRemoveTentative). // x -> xid 42
				op(kOpConfirmRemove, 40).
				op(kOpUnremove, 42),
			want: "[x y]",
		},
		{
			name: "read-behind STATE_DUMP",
			journal: kj{}.op(kOpStateDump, 7, 1).addXID(7, "held").op(kOpRemoveTentative).
				addx("z", 1, 0),
			want:     "[held z]",
			wantOpen: 1,
		},
		{
			name:    "torn last operation is dropped",
			journal: kj{}.addx("a", 1, 0).addx("bbbbbbbb", 1, 0)[:len(kj{}.addx("a", 1, 0).addx("bbbbbbbb", 1, 0))-3],
			want:    "[a]",
			torn:    true,
		},
		{
			name:    "unknown opcode",
			journal: kj{}.addx("a", 1, 0).op(42),
			corrupt: true,
		},
		{
			name:    "opcode one past the last",
			journal: kj{}.addx("a", 1, 0).op(kOpStateDump + 1),
			corrupt: true,
		},
		{
			name:    "empty item",
			journal: kj{}.add("", 0).addx("b", 1, 0),
			want:    "[ b]",
		},
		{
			// At 1025 removed items the replay drops the removed head
			// of its queue; an abort then puts the item back in front.
			name: "unremove after a long run of removes",
			journal: func() kj {
				k := kj{}
				for i := 0; i < 1025; i++ {
					k = k.addx(fmt.Sprint(i), 1, 0)
				}
				k = k.op(kOpRemoveTentative) // "0" -> xid 1
				for i := 1; i < 1025; i++ {
					k = k.op(kOpRemove)
				}
				return k.addx("last", 1, 0).op(kOpUnremove, 1)
			}(),
			want: "[0 last]",
		},
		{
			name:    "remove from empty queue",
			journal: kj{}.op(kOpRemove),
			corrupt: true,
		},
		{
			name:    "negative size",
			journal: kj{}.op(kOpAddX, -5).i64(1).i64(2).addx("more", 1, 0),
			corrupt: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cars")
			if err := os.WriteFile(path, tc.journal, 0o644); err != nil {
				t.Fatal(err)
			}
			res, err := ReplayKestrel(path)
			if tc.corrupt {
				var ce *CorruptError
				if !errors.As(err, &ce) || ce.File != path {
					t.Fatalf("err = %v, want CorruptError in %s", err, path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(datas(res.Items)); got != tc.want {
				t.Fatalf("items = %s, want %s", got, tc.want)
			}
			if res.Open != tc.wantOpen {
				t.Fatalf("open = %d, want %d", res.Open, tc.wantOpen)
			}
			if (res.Torn != nil) != tc.torn {
				t.Fatalf("torn = %+v, want %v", res.Torn, tc.torn)
			}
		})
	}
}

func TestKestrelFieldsAndDump(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cars")
	os.WriteFile(path, kj{}.add("old", 1700000000).addx("new", 1234, 5678), 0o644)
	res, err := ReplayKestrel(path)
	if err != nil {
		t.Fatal(err)
	}
	if it := res.Items[0]; it.Expiry != 1700000000000 || it.AddTime != 0 {
		t.Fatalf("old ADD fields: %+v", it)
	}
	if it := res.Items[1]; it.AddTime != 1234 || it.Expiry != 5678 {
		t.Fatalf("ADDX fields: %+v", it)
	}
	if f, err := DetectFormat(path); err != nil || f != FormatKestrel {
		t.Fatalf("DetectFormat = %v, %v", f, err)
	}
	var ops []string
	if err := DumpFile(path, func(e DumpEntry) error {
		ops = append(ops, fmt.Sprintf("%d:%s:%s", e.Offset, e.Op, e.Data))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(ops); got != "[0:ADD:old 12:ADDX:new]" {
		t.Fatalf("dump = %s", got)
	}
}

// TestDetectFormat: the magic makes a kpush segment; an empty file or a
// first byte that is a Kestrel opcode (0 to 8, STATE_DUMP included) makes
// a Kestrel journal; anything else is corruption, however long the file.
func TestDetectFormat(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		contents []byte
		want     Format
	}{
		{"kpush", fileHeader(), FormatKpush},
		{"empty", nil, FormatKestrel},
		{"add", kj{}.add("x", 0), FormatKestrel},
		{"state dump", []byte{kOpStateDump, 0, 0, 0, 0, 0, 0, 0, 0}, FormatKestrel},
		{"garbage byte", []byte{kOpStateDump + 1}, 0},
		{"garbage file", bytes.Repeat([]byte{0xff}, 64), 0},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		if err := os.WriteFile(path, tc.contents, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := DetectFormat(path)
		if tc.want == 0 {
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.File != path {
				t.Errorf("%s: DetectFormat = %v, %v; want a CorruptError naming the file", tc.name, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: DetectFormat = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}
