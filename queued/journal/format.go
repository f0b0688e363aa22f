package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// On-disk format, version 1. docs/journal.md is the normative description;
// change both together.
const (
	fileMagic       = "KPJRNL"
	formatVersion   = 1
	fileHeaderSize  = 8 // magic (6) + version (1) + reserved zero (1)
	frameHeaderSize = 8 // u32 payload length + u32 CRC32C
	frameAlign      = 8

	// maxPayload bounds a record so a garbage length word is recognised
	// as garbage instead of sending the reader off to allocate gigabytes.
	maxPayload = 1 << 30

	// MaxItemSize is the largest item data a record can carry.
	MaxItemSize = maxPayload - addFixedSize - 1

	startFixedSize = 16 // first id u64, flags u64
	addFixedSize   = 24 // id u64, add time i64, expiry i64
	clearFixedSize = 8  // up-to id u64

	// removeReserve is the most a REMOVE of one id can occupy on disk
	// (8 frame header + 1 type + 16 range, padded). Space this large is
	// kept preallocated per live item so removes never meet a full disk.
	removeReserve = 32

	// startCompacted marks a START record of a file written by compaction:
	// every segment with a lower sequence number is superseded by it.
	startCompacted = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// RecordType is the type byte of a journal record.
type RecordType uint8

// Record types of format version 1.
const (
	RecStart  RecordType = 1 // first record of every segment
	RecAdd    RecordType = 2 // an item was appended
	RecRemove RecordType = 3 // items are gone for good
	RecClear  RecordType = 4 // every item up to an id is gone (flush)
)

func (t RecordType) String() string {
	switch t {
	case RecStart:
		return "START"
	case RecAdd:
		return "ADD"
	case RecRemove:
		return "REMOVE"
	case RecClear:
		return "CLEAR"
	}
	return fmt.Sprintf("TYPE(%d)", uint8(t))
}

// IDRange is an inclusive range of item ids.
type IDRange struct{ First, Last uint64 }

// Record is one decoded journal record. Which fields are meaningful
// depends on Type: START uses ID (first id of the segment) and Flags; ADD
// uses ID, AddTime, Expiry and Data; REMOVE uses Ranges; CLEAR uses ID (the
// highest id removed).
type Record struct {
	Type    RecordType
	ID      uint64
	AddTime int64
	Expiry  int64
	Flags   uint64
	Data    []byte
	Ranges  []IDRange
}

// Decoding errors. errShortFrame and errZeroFrame may describe a torn tail;
// the others are always corruption when valid data follows.
var (
	errShortFrame = errors.New("record extends past end of file")
	errZeroFrame  = errors.New("zero length word")
	errBadLength  = errors.New("implausible record length")
	errCRC        = errors.New("crc mismatch")
	errBadRecord  = errors.New("malformed record payload")
)

func payloadSize(r *Record) int {
	switch r.Type {
	case RecStart:
		return 1 + startFixedSize
	case RecAdd:
		return 1 + addFixedSize + len(r.Data)
	case RecRemove:
		return 1 + 16*len(r.Ranges)
	case RecClear:
		return 1 + clearFixedSize
	}
	return 1
}

func padded(n int) int { return (n + frameAlign - 1) &^ (frameAlign - 1) }

// addFrameSize is the on-disk size of an ADD carrying n data bytes.
func addFrameSize(n int) int { return frameHeaderSize + padded(1+addFixedSize+n) }

// EncodeRecord appends the framed record to dst and returns the result.
func EncodeRecord(dst []byte, r *Record) []byte {
	n := payloadSize(r)
	start := len(dst)
	total := frameHeaderSize + padded(n)
	dst = append(dst, make([]byte, total)...)
	b := dst[start:]
	binary.LittleEndian.PutUint32(b[0:4], uint32(n))
	p := b[frameHeaderSize : frameHeaderSize+n]
	p[0] = byte(r.Type)
	switch r.Type {
	case RecStart:
		binary.LittleEndian.PutUint64(p[1:], r.ID)
		binary.LittleEndian.PutUint64(p[9:], r.Flags)
	case RecAdd:
		binary.LittleEndian.PutUint64(p[1:], r.ID)
		binary.LittleEndian.PutUint64(p[9:], uint64(r.AddTime))
		binary.LittleEndian.PutUint64(p[17:], uint64(r.Expiry))
		copy(p[25:], r.Data)
	case RecRemove:
		for i, rg := range r.Ranges {
			binary.LittleEndian.PutUint64(p[1+16*i:], rg.First)
			binary.LittleEndian.PutUint64(p[9+16*i:], rg.Last)
		}
	case RecClear:
		binary.LittleEndian.PutUint64(p[1:], r.ID)
	}
	crc := crc32.Update(0, castagnoli, b[0:4])
	crc = crc32.Update(crc, castagnoli, p)
	binary.LittleEndian.PutUint32(b[4:8], crc)
	return dst
}

// encodeAddHead appends the frame of an ADD without its data and padding
// (they follow in the file: data, then padded(n)-n zero bytes) and returns
// the result and the frame's total size. The CRC covers the data all the
// same; the data is read, never copied.
func encodeAddHead(dst []byte, id uint64, addTime, expiry int64, data []byte) ([]byte, int) {
	n := 1 + addFixedSize + len(data)
	start := len(dst)
	dst = append(dst, make([]byte, frameHeaderSize+1+addFixedSize)...)
	b := dst[start:]
	binary.LittleEndian.PutUint32(b[0:4], uint32(n))
	p := b[frameHeaderSize:]
	p[0] = byte(RecAdd)
	binary.LittleEndian.PutUint64(p[1:], id)
	binary.LittleEndian.PutUint64(p[9:], uint64(addTime))
	binary.LittleEndian.PutUint64(p[17:], uint64(expiry))
	crc := crc32.Update(0, castagnoli, b[0:4])
	crc = crc32.Update(crc, castagnoli, p)
	// In pieces: the CRC loop is assembly, where the scheduler cannot
	// preempt; one pass over 8 MiB held a GC's stop of this goroutine
	// (and so everybody's progress) for a millisecond.
	for len(data) > 0 {
		k := min(len(data), crcChunk)
		crc = crc32.Update(crc, castagnoli, data[:k])
		data = data[k:]
	}
	binary.LittleEndian.PutUint32(b[4:8], crc)
	return dst, frameHeaderSize + padded(n)
}

const crcChunk = 64 << 10

// DecodeRecord decodes the frame at the start of b and returns the record
// and the number of bytes it occupies (padding included). Data aliases b.
// It never panics; every failure is one of the decoding errors above.
func DecodeRecord(b []byte) (Record, int, error) {
	if len(b) < frameHeaderSize {
		if allZero(b) {
			return Record{}, 0, errZeroFrame
		}
		return Record{}, 0, errShortFrame
	}
	n := int(binary.LittleEndian.Uint32(b[0:4]))
	if n == 0 {
		return Record{}, 0, errZeroFrame
	}
	if n > maxPayload {
		return Record{}, 0, errBadLength
	}
	total := frameHeaderSize + padded(n)
	if len(b) < total {
		return Record{}, 0, errShortFrame
	}
	p := b[frameHeaderSize : frameHeaderSize+n]
	crc := crc32.Update(0, castagnoli, b[0:4])
	crc = crc32.Update(crc, castagnoli, p)
	if crc != binary.LittleEndian.Uint32(b[4:8]) {
		return Record{}, 0, errCRC
	}
	r, err := decodePayload(p)
	if err != nil {
		return Record{}, 0, err
	}
	return r, total, nil
}

func decodePayload(p []byte) (Record, error) {
	r := Record{Type: RecordType(p[0])}
	body := p[1:]
	switch r.Type {
	case RecStart:
		if len(body) != startFixedSize {
			return Record{}, errBadRecord
		}
		r.ID = binary.LittleEndian.Uint64(body)
		r.Flags = binary.LittleEndian.Uint64(body[8:])
	case RecAdd:
		if len(body) < addFixedSize {
			return Record{}, errBadRecord
		}
		r.ID = binary.LittleEndian.Uint64(body)
		r.AddTime = int64(binary.LittleEndian.Uint64(body[8:]))
		r.Expiry = int64(binary.LittleEndian.Uint64(body[16:]))
		r.Data = body[addFixedSize:]
	case RecRemove:
		if len(body) == 0 || len(body)%16 != 0 {
			return Record{}, errBadRecord
		}
		r.Ranges = make([]IDRange, len(body)/16)
		for i := range r.Ranges {
			rg := IDRange{binary.LittleEndian.Uint64(body[16*i:]), binary.LittleEndian.Uint64(body[16*i+8:])}
			if rg.Last < rg.First {
				return Record{}, errBadRecord
			}
			r.Ranges[i] = rg
		}
	case RecClear:
		if len(body) != clearFixedSize {
			return Record{}, errBadRecord
		}
		r.ID = binary.LittleEndian.Uint64(body)
	default:
		return Record{}, errBadRecord
	}
	return r, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func fileHeader() []byte {
	h := make([]byte, fileHeaderSize)
	copy(h, fileMagic)
	h[6] = formatVersion
	return h
}

// checkHeader validates a segment file header.
func checkHeader(h []byte) error {
	if len(h) < fileHeaderSize {
		return io.ErrUnexpectedEOF
	}
	if string(h[:6]) != fileMagic {
		return fmt.Errorf("bad magic %q, not a kpush journal", h[:6])
	}
	if h[6] != formatVersion {
		return fmt.Errorf("unsupported format version %d (this build reads version %d)", h[6], formatVersion)
	}
	return nil
}

// rangesOf turns sorted, distinct ids into inclusive ranges.
func rangesOf(ids []uint64) []IDRange {
	var out []IDRange
	for _, id := range ids {
		if k := len(out); k > 0 && out[k-1].Last+1 == id {
			out[k-1].Last = id
			continue
		}
		out = append(out, IDRange{id, id})
	}
	return out
}
