package journal

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/kpush/kpush/internal/fsync"
)

type replayResult struct {
	segs   []*segment
	nextID uint64
	// torn describes a torn tail found (and, when repairing, cut).
	torn *TornTail
}

// TornTail describes an incomplete final record: the file is valid up to
// Offset, and Size-Offset bytes after it are the remains of a write that
// did not finish.
type TornTail struct {
	File         string
	Offset, Size int64
}

// replay rebuilds the live table from the segment files, in order. With
// repair set it deletes segments superseded by a compacted one and cuts a
// torn tail (after copying the file to .broken); without it, it changes
// nothing and reports what it would do.
func replay(files []segFile, live *liveTable, log *slog.Logger, repair bool) (*replayResult, error) {
	res := &replayResult{nextID: 1}
	// A compacted file supersedes every segment before it: they are the
	// remains of a compaction that crashed before deleting them.
	for i := len(files) - 1; i > 0; i-- {
		compacted, err := isCompacted(files[i].path)
		if err != nil || !compacted {
			continue
		}
		for _, old := range files[:i] {
			if repair {
				log.Warn("removing journal segment superseded by a compacted one", "file", old.path, "by", files[i].path)
				if err := os.Remove(old.path); err != nil {
					return nil, fmt.Errorf("remove superseded segment %s: %w", old.path, err)
				}
			}
		}
		if repair {
			if err := fsync.Dir(filepath.Dir(files[i].path)); err != nil {
				return nil, err
			}
		}
		files = files[i:]
		break
	}
	var lastAdd uint64
	for i, sf := range files {
		last := i == len(files)-1
		seg, err := replaySegment(sf, live, &lastAdd, res, last, log, repair)
		if err != nil {
			return nil, err
		}
		if seg != nil {
			res.segs = append(res.segs, seg)
			res.nextID = max(res.nextID, seg.firstID)
		}
	}
	res.nextID = max(res.nextID, lastAdd+1)
	return res, nil
}

func isCompacted(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	h := make([]byte, fileHeaderSize)
	if _, err := f.ReadAt(h, 0); err != nil || checkHeader(h) != nil {
		return false, err
	}
	r := frameReader{ra: f, off: fileHeaderSize, limit: st.Size()}
	rec, _, err := r.next()
	if err != nil || rec.Type != RecStart {
		return false, err
	}
	return rec.Flags&startCompacted != 0, nil
}

// replaySegment applies one file. It returns nil, nil for a final segment
// that holds nothing whole (torn while being created), after removing it.
func replaySegment(sf segFile, live *liveTable, lastAdd *uint64, res *replayResult, last bool, log *slog.Logger, repair bool) (*segment, error) {
	f, err := os.Open(sf.path)
	if err != nil {
		return nil, fmt.Errorf("open journal segment %s: %w", sf.path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat journal segment %s: %w", sf.path, err)
	}
	size := st.Size()
	seg := &segment{seq: sf.seq, path: sf.path}

	h := make([]byte, fileHeaderSize)
	n, _ := f.ReadAt(h, 0)
	if n < fileHeaderSize || allZero(h) {
		if !last {
			return nil, &CorruptError{sf.path, 0, "missing file header in a segment that is not the last"}
		}
		return nil, tornAt(sf.path, 0, size, res, log, repair, true)
	}
	if err := checkHeader(h); err != nil {
		return nil, &CorruptError{sf.path, 0, err.Error()}
	}
	r := frameReader{ra: f, off: fileHeaderSize, limit: size}
	first := true
	for {
		rec, off, err := r.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if !isDecodeErr(err) {
				return nil, fmt.Errorf("read journal segment %s: %w", sf.path, err)
			}
			zeros := false
			if !first { // a segment without its START is torn, zeros or not
				var zerr error
				if zeros, zerr = zeroTail(f, off, size); zerr != nil {
					return nil, fmt.Errorf("read journal segment %s: %w", sf.path, zerr)
				}
			}
			if zeros {
				// The writer's zeros ahead of its records (zeroAhead),
				// left by a crash: the segment ends here. Not a tear.
				if repair {
					if err := cutAt(sf.path, off); err != nil {
						return nil, err
					}
				}
				size = off
				break
			}
			if !last {
				return nil, &CorruptError{sf.path, off, err.Error() + " in a segment that is not the last"}
			}
			next, verr := validFrameAfter(f, off+frameAlign, size)
			if verr != nil {
				return nil, fmt.Errorf("read journal segment %s: %w", sf.path, verr)
			}
			if next >= 0 {
				return nil, &CorruptError{sf.path, off, fmt.Sprintf("%v, and a valid record follows at offset %d", err, next)}
			}
			if first {
				return nil, tornAt(sf.path, 0, size, res, log, repair, true)
			}
			if err := tornAt(sf.path, off, size, res, log, repair, false); err != nil {
				return nil, err
			}
			size = off
			break
		}
		if first {
			if rec.Type != RecStart {
				return nil, &CorruptError{sf.path, off, "segment does not begin with a START record"}
			}
			seg.firstID, seg.compacted = rec.ID, rec.Flags&startCompacted != 0
			first = false
			continue
		}
		switch rec.Type {
		case RecStart:
			return nil, &CorruptError{sf.path, off, "START record in the middle of a segment"}
		case RecAdd:
			if rec.ID <= *lastAdd || rec.ID < seg.firstID {
				return nil, &CorruptError{sf.path, off, fmt.Sprintf("ADD id %d does not follow id %d (segment starts at %d)", rec.ID, *lastAdd, seg.firstID)}
			}
			*lastAdd = rec.ID
			live.add(rec.ID, len(rec.Data))
		case RecRemove:
			for _, rg := range rec.Ranges {
				live.removeRange(rg.First, rg.Last)
			}
		case RecClear:
			live.removeRange(0, rec.ID)
		}
	}
	if first {
		// Header but no START: a segment torn while being created.
		if !last {
			return nil, &CorruptError{sf.path, fileHeaderSize, "segment has no START record"}
		}
		return nil, tornAt(sf.path, 0, size, res, log, repair, true)
	}
	seg.size = size
	return seg, nil
}

func isDecodeErr(err error) bool {
	for _, e := range []error{errShortFrame, errZeroFrame, errBadLength, errCRC, errBadRecord} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// cutAt truncates the segment file at path to off and fsyncs it.
func cutAt(path string, off int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open journal segment %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Truncate(off); err != nil {
		return fmt.Errorf("truncate journal segment %s at %d: %w", path, off, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync journal segment %s: %w", path, err)
	}
	return nil
}

// tornAt records (and with repair, cuts) a torn tail at off. A whole-file
// tear (a segment that crashed while being created) removes the file.
func tornAt(path string, off, size int64, res *replayResult, log *slog.Logger, repair, whole bool) error {
	res.torn = &TornTail{File: path, Offset: off, Size: size}
	if !repair {
		return nil
	}
	broken := path + brokeExt
	if err := copyFile(broken, path); err != nil {
		return fmt.Errorf("keep a copy of torn journal %s: %w", path, err)
	}
	if whole {
		log.Warn("removing journal segment torn while being created", "file", path, "size", size, "copy", broken)
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("remove torn segment %s: %w", path, err)
		}
		return fsync.Dir(filepath.Dir(path))
	}
	log.Warn("truncating torn journal tail", "file", path, "offset", off, "dropped", size-off, "copy", broken)
	if err := cutAt(path, off); err != nil {
		return err
	}
	return fsync.Dir(filepath.Dir(path))
}
