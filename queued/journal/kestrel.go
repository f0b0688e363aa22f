package journal

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// Kestrel journal opcodes, as Kestrel writes them (docs/journal.md, "Kestrel journals").
const (
	kOpAdd             = 0 // i32 size, i32 expiry (s), data[size-4]
	kOpRemove          = 1
	kOpAddX            = 2 // i32 size, i64 add ms, i64 expiry ms, data[size-16]
	kOpRemoveTentative = 3
	kOpSaveXID         = 4 // i32 xid
	kOpUnremove        = 5 // i32 xid
	kOpConfirmRemove   = 6 // i32 xid
	kOpAddXID          = 7 // i32 xid, i32 size, i64 add ms, i64 expiry ms, data[size-16]
	kOpStateDump       = 8 // i32 xid, i32 open transaction count
)

var kestrelOpNames = [...]string{"ADD", "REMOVE", "ADDX", "REMOVE_TENTATIVE", "SAVE_XID", "UNREMOVE", "CONFIRM_REMOVE", "ADD_XID", "STATE_DUMP"}

// maxKestrelItem bounds a Kestrel item size so garbage is not allocated.
const maxKestrelItem = 1 << 30

// kestrelReader decodes Kestrel opcodes from a stream, tracking offsets.
type kestrelReader struct {
	r    *bufio.Reader
	path string
	off  int64
	buf  []byte
	big  bytes.Buffer
}

func (k *kestrelReader) read(n int) ([]byte, error) {
	if n > 1<<20 {
		// A large size may be garbage: grow with the data actually
		// there instead of allocating the claimed size up front.
		k.big.Reset()
		m, err := io.CopyN(&k.big, k.r, int64(n))
		k.off += m
		if err != nil && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return k.big.Bytes(), err
	}
	if cap(k.buf) < n {
		k.buf = make([]byte, n)
	}
	b := k.buf[:n]
	m, err := io.ReadFull(k.r, b)
	k.off += int64(m)
	return b, err
}

func (k *kestrelReader) i32() (int32, error) {
	b, err := k.read(4)
	if err != nil {
		return 0, err
	}
	return int32(binary.LittleEndian.Uint32(b)), nil
}

func (k *kestrelReader) i64() (int64, error) {
	b, err := k.read(8)
	if err != nil {
		return 0, err
	}
	return int64(binary.LittleEndian.Uint64(b)), nil
}

// errKestrelTorn marks a Kestrel journal whose last operation is cut short.
var errKestrelTorn = errors.New("last operation is incomplete")

// readKestrel calls fn for every operation of a Kestrel journal. A final
// operation cut short is reported as a *CorruptError at the op's offset
// whose Reason is errKestrelTorn's text.
func readKestrel(r *bufio.Reader, path string, fn func(DumpEntry) error) error {
	k := &kestrelReader{r: r, path: path}
	for {
		start := k.off
		op, err := k.r.ReadByte()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read kestrel journal %s: %w", path, err)
		}
		k.off++
		e, err := k.op(op, start)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return &CorruptError{path, start, errKestrelTorn.Error()}
			}
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

func (k *kestrelReader) op(op byte, start int64) (DumpEntry, error) {
	e := DumpEntry{Offset: start}
	if int(op) >= len(kestrelOpNames) {
		return e, &CorruptError{k.path, start, fmt.Sprintf("unknown kestrel opcode %d", op)}
	}
	e.Op = kestrelOpNames[op]
	data := func(size int32, fixed int32) error {
		if size < fixed || size-fixed > maxKestrelItem {
			return &CorruptError{k.path, start, fmt.Sprintf("%s with impossible size %d", e.Op, size)}
		}
		b, err := k.read(int(size - fixed))
		e.Data = b
		return err
	}
	var err error
	var x int32
	switch op {
	case kOpAdd:
		var size, exp int32
		if size, err = k.i32(); err != nil {
			return e, err
		}
		if exp, err = k.i32(); err != nil {
			return e, err
		}
		if exp != 0 {
			e.Expiry = int64(exp) * 1000
		}
		err = data(size, 4)
	case kOpAddX, kOpAddXID:
		if op == kOpAddXID {
			if x, err = k.i32(); err != nil {
				return e, err
			}
			e.ID = uint64(uint32(x))
		}
		var size int32
		if size, err = k.i32(); err != nil {
			return e, err
		}
		if e.AddTime, err = k.i64(); err != nil {
			return e, err
		}
		if e.Expiry, err = k.i64(); err != nil {
			return e, err
		}
		err = data(size, 16)
	case kOpRemove, kOpRemoveTentative:
	case kOpSaveXID, kOpUnremove, kOpConfirmRemove:
		x, err = k.i32()
		e.ID = uint64(uint32(x))
	case kOpStateDump:
		if x, err = k.i32(); err != nil {
			return e, err
		}
		e.ID = uint64(uint32(x))
		var n int32
		n, err = k.i32()
		e.Count = int(n)
	}
	return e, err
}

// KestrelResult is the state a Kestrel journal replays to.
type KestrelResult struct {
	Items []Item // live items in queue order; their ID fields are zero
	Open  int    // how many of them were open (reserved) reads, now back at the head
	Torn  *TornTail
}

// ReplayKestrel replays Kestrel journal files (in the order given, like
// Kestrel replays rotated files then the current one) to the items that
// were live. Open transactions come back at the head, in xid order, as
// they would after a Kestrel restart. The items are held in memory: this
// is an offline import tool. A final operation cut short (Kestrel's torn
// tail) is dropped and reported in Torn.
func ReplayKestrel(paths ...string) (*KestrelResult, error) {
	type kitem struct {
		it  Item
		xid int32
	}
	var queue []kitem
	head := 0
	open := map[int32]kitem{}
	var xidCounter int32
	res := &KestrelResult{}
	for pi, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("open kestrel journal %s: %w", path, err)
		}
		st, _ := f.Stat()
		err = readKestrel(bufio.NewReaderSize(f, readWindow), path, func(e DumpEntry) error {
			switch e.Op {
			case "ADD", "ADDX", "ADD_XID":
				queue = append(queue, kitem{Item{AddTime: e.AddTime, Expiry: e.Expiry, Data: append([]byte(nil), e.Data...)}, int32(e.ID)})
			case "REMOVE", "REMOVE_TENTATIVE":
				if head == len(queue) {
					return &CorruptError{path, e.Offset, e.Op + " on an empty queue"}
				}
				ki := queue[head]
				queue[head] = kitem{}
				head++
				if e.Op == "REMOVE_TENTATIVE" {
					if ki.xid == 0 {
						xidCounter++
						ki.xid = xidCounter
					}
					open[ki.xid] = ki
				}
			case "UNREMOVE":
				ki, ok := open[int32(e.ID)]
				if !ok {
					return &CorruptError{path, e.Offset, fmt.Sprintf("UNREMOVE of unknown xid %d", e.ID)}
				}
				delete(open, int32(e.ID))
				ki.xid = 0
				if head > 0 {
					head--
					queue[head] = ki
				} else {
					queue = append([]kitem{ki}, queue...)
				}
			case "CONFIRM_REMOVE":
				delete(open, int32(e.ID))
			case "SAVE_XID", "STATE_DUMP":
				xidCounter = int32(e.ID)
			}
			if head > 1024 && head*2 > len(queue) {
				queue = append([]kitem(nil), queue[head:]...)
				head = 0
			}
			return nil
		})
		f.Close()
		var ce *CorruptError
		if errors.As(err, &ce) && ce.Reason == errKestrelTorn.Error() && pi == len(paths)-1 {
			res.Torn = &TornTail{File: path, Offset: ce.Offset, Size: st.Size()}
			err = nil
		}
		if err != nil {
			return nil, err
		}
	}
	xids := make([]int32, 0, len(open))
	for x := range open {
		xids = append(xids, x)
	}
	sort.Slice(xids, func(a, b int) bool { return xids[a] < xids[b] })
	for _, x := range xids {
		res.Items = append(res.Items, open[x].it)
	}
	res.Open = len(xids)
	for _, ki := range queue[head:] {
		res.Items = append(res.Items, ki.it)
	}
	return res, nil
}
