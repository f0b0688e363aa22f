package journal

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/kpush/kpush/internal/queuename"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrCorrupt: a journal holds damaged data that is not a torn tail.
	// The journal refuses to open and leaves its files untouched.
	ErrCorrupt = errors.New("journal corrupt")
	// ErrClosed: the journal was closed.
	ErrClosed = errors.New("journal closed")
	// ErrLocked: another process (or Journal) holds the queue's journal.
	ErrLocked = errors.New("journal locked by another process")
	// ErrDiskFull: no room on disk for the write (ENOSPC, EFBIG, EDQUOT);
	// the caller should refuse the item and retry once space returns.
	ErrDiskFull = errors.New("journal disk full")
	// ErrBadName: the queue name is not a valid queue name, so it cannot
	// be a journal file name (the rule is package queuename's).
	ErrBadName = queuename.ErrInvalid
	// ErrTooLarge: an item's data exceeds MaxItemSize.
	ErrTooLarge = errors.New("item too large for journal")
)

// CorruptError locates damage in a journal file.
type CorruptError struct {
	File   string
	Offset int64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("journal corrupt: %s at offset %d: %s (the file was left untouched; inspect it with `kpush journal dump`)", e.File, e.Offset, e.Reason)
}

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EFBIG) || errors.Is(err, syscall.EDQUOT)
}

// diskErr wraps a failed write so that errors.Is(err, ErrDiskFull) holds
// whenever the disk (or a file size limit) was the cause.
func diskErr(op, path string, err error) error {
	if isNoSpace(err) {
		return fmt.Errorf("%s %s: %w: %w", op, path, ErrDiskFull, err)
	}
	return fmt.Errorf("%s %s: %w", op, path, err)
}
