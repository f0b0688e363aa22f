// The server's availability (status UP|READONLY|QUIESCENT), persisted in
// the data directory.

package queued

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kpush/kpush/internal/fsync"
)

// Status is the server's availability, set with `status <UP|READONLY|QUIESCENT>`
// and kept across restarts.
type Status int32

func (s Status) String() string {
	switch s {
	case StatusReadOnly:
		return "READONLY"
	case StatusQuiescent:
		return "QUIESCENT"
	}
	return "UP"
}

// ParseStatus parses UP, READONLY or QUIESCENT (any case).
func ParseStatus(v string) (Status, error) {
	switch strings.ToUpper(v) {
	case "UP":
		return StatusUp, nil
	case "READONLY":
		return StatusReadOnly, nil
	case "QUIESCENT":
		return StatusQuiescent, nil
	}
	return 0, fmt.Errorf("unknown status %q: want UP, READONLY or QUIESCENT", v)
}

// statusFile holds the persisted Status in the data directory. Its name has
// a '.', so it can never be a queue's.
const statusFile = "queued.status"

// Status returns the server's availability.
func (s *Server) Status() Status { return Status(s.status.Load()) }

// SetStatus changes and persists the availability (temp file, fsync,
// rename, fsync of the directory).
func (s *Server) SetStatus(st Status) error {
	dir := s.cfg.DataDir
	if err := fsync.WriteFile(filepath.Join(dir, statusFile), []byte(st.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("write status file in %s: %w", dir, err)
	}
	s.status.Store(int32(st))
	s.log.Info("status changed", "status", st.String())
	return nil
}

func (s *Server) loadStatus() error {
	b, err := os.ReadFile(filepath.Join(s.cfg.DataDir, statusFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read status file: %w", err)
	}
	st, err := ParseStatus(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("status file %s: %w (fix or delete it)", filepath.Join(s.cfg.DataDir, statusFile), err)
	}
	s.status.Store(int32(st))
	return nil
}
