package journal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/kpush/kpush/internal/queuename"
)

// DumpEntry is one record of a journal file, ours or Kestrel's, as
// `kpush journal dump` prints it.
type DumpEntry struct {
	Offset  int64
	Op      string    // record type: START ADD REMOVE CLEAR, or a Kestrel opcode name
	ID      uint64    // ADD: item id; START: first id; CLEAR: highest id removed; Kestrel: xid
	AddTime int64     // unix ms
	Expiry  int64     // unix ms, 0 = never
	Data    []byte    // item data; aliases a buffer reused by the next entry
	Ranges  []IDRange // REMOVE
	Flags   uint64    // START
	Count   int       // Kestrel STATE_DUMP: open transactions that follow
}

// Format names what DumpFile found.
type Format int

const (
	FormatKpush Format = iota + 1
	FormatKestrel
)

// DetectFormat tells a kpush segment (by its magic) from a Kestrel journal
// (which starts with an opcode byte 0-8). An empty file counts as Kestrel's.
func DetectFormat(path string) (Format, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open journal %s: %w", path, err)
	}
	defer f.Close()
	h := make([]byte, len(fileMagic))
	n, err := io.ReadFull(f, h)
	if n > 0 && string(h[:n]) == fileMagic[:n] && n == len(fileMagic) {
		return FormatKpush, nil
	}
	if n == 0 || h[0] <= byte(kOpStateDump) {
		return FormatKestrel, nil
	}
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read journal %s: %w", path, err)
	}
	return 0, &CorruptError{path, 0, fmt.Sprintf("neither a kpush journal (magic %q) nor a Kestrel journal (first byte %#x is no opcode)", fileMagic, h[0])}
}

// DumpFile calls fn for each record of a journal file, detecting the format.
// It stops at the first damaged record with a *CorruptError naming its
// offset (for a torn tail too: dump does not repair).
func DumpFile(path string, fn func(DumpEntry) error) error {
	format, err := DetectFormat(path)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open journal %s: %w", path, err)
	}
	defer f.Close()
	if format == FormatKestrel {
		return readKestrel(bufio.NewReaderSize(f, readWindow), path, fn)
	}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat journal %s: %w", path, err)
	}
	h := make([]byte, fileHeaderSize)
	if _, err := f.ReadAt(h, 0); err != nil {
		return &CorruptError{path, 0, "short file header"}
	}
	if err := checkHeader(h); err != nil {
		return &CorruptError{path, 0, err.Error()}
	}
	r := frameReader{ra: f, off: fileHeaderSize, limit: st.Size()}
	for {
		rec, off, err := r.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if isDecodeErr(err) {
				if zeros, zerr := zeroTail(f, off, st.Size()); zerr == nil && zeros {
					return nil // the zeros written ahead of the records
				}
				return &CorruptError{path, off, err.Error()}
			}
			return fmt.Errorf("read journal %s: %w", path, err)
		}
		e := DumpEntry{Offset: off, Op: rec.Type.String(), ID: rec.ID, AddTime: rec.AddTime, Expiry: rec.Expiry, Data: rec.Data, Ranges: rec.Ranges, Flags: rec.Flags}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// CheckResult is what Check found in one queue's journal.
type CheckResult struct {
	Queue    string
	Segments int
	Items    int64 // live items
	Bytes    int64 // their data bytes
	Torn     *TornTail
}

// Check verifies the journal of one queue without opening it for writing
// and without changing any file. A torn tail is reported in the result
// (Open would cut it); corruption is returned as a *CorruptError.
func Check(dir, name string) (*CheckResult, error) {
	if err := queuename.Check(name); err != nil {
		return nil, fmt.Errorf("check journal: %w", err)
	}
	files, err := listSegments(dir, fileBase(name))
	if err != nil {
		return nil, err
	}
	live := newLiveTable()
	res, err := replay(files, live, nil, false)
	if err != nil {
		return nil, err
	}
	return &CheckResult{Queue: name, Segments: len(res.segs), Items: live.items, Bytes: live.bytes, Torn: res.torn}, nil
}
