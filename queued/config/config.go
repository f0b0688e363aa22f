package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/kpush/kpush/queued"
	"github.com/kpush/kpush/queued/journal"
)

// Errors returned by Parse and Load, for errors.Is. The
// concrete error is a *Error naming the file, line and column.
var (
	// ErrSyntax: the file is not in the Kestrel 1.x (configgy) format.
	ErrSyntax = errors.New("config syntax error")
	// ErrValue: a known key has a value of the wrong kind or range.
	ErrValue = errors.New("invalid config value")
)

// Error is a syntax or value error at a position in a config file.
type Error struct {
	File string
	Line int // 1-based
	Col  int // 1-based, in bytes
	Msg  string
	Kind error // ErrSyntax or ErrValue
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

func (e *Error) Unwrap() error { return e.Kind }

// Load reads a Kestrel 1.x config file and returns the
// configuration it describes, starting from DefaultConfig. Unknown keys are
// logged as warnings (slog default logger) naming file:line; syntax and
// value errors are returned as *Error.
func Load(path string) (queued.Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return queued.Config{}, fmt.Errorf("open config file %s: %w", path, err)
	}
	defer f.Close()
	return Parse(f, path)
}

// Parse parses a config file read from r; name is used in messages.
func Parse(r io.Reader, name string) (queued.Config, error) {
	return parseConfig(r, name, slog.Default())
}

// Reload re-reads the config file at path and returns c with its queue
// settings (Defaults and Queues) replaced by the file's; server settings
// (listen address, data directory, limits on connections...) stay as they
// are, since they cannot change under a running server. This is what the
// `reload` command applies. Command-line flags that override queue settings
// must be applied again by the caller. With an empty path (the server was
// started without a file) it returns c unchanged.
func Reload(c queued.Config, path string) (queued.Config, error) {
	if path == "" {
		return c, nil
	}
	f, err := Load(path)
	if err != nil {
		return c, fmt.Errorf("reload: %w", err)
	}
	c.Defaults = f.Defaults
	c.Queues = f.Queues
	return c, nil
}

// MinSyncInterval is the shortest interval sync_journal accepts: below it
// the fsync ticker would cost more than syncing every write.
const MinSyncInterval = time.Millisecond

// ParseSyncPolicy parses "always", "never", "true" (always), "false"
// (never, Kestrel 1.x's meaning) or an interval of at least
// MinSyncInterval ("10ms", or a bare integer in milliseconds). The --sync
// flag uses it too.
func ParseSyncPolicy(s string) (queued.SyncPolicy, error) {
	switch strings.ToLower(s) {
	case "always", "true", "on":
		return queued.SyncPolicy{Mode: journal.SyncAlways}, nil
	case "never", "false", "off":
		return queued.SyncPolicy{Mode: journal.SyncNever}, nil
	}
	d, err := parseDuration(s, time.Millisecond)
	if err != nil || d < MinSyncInterval {
		return queued.SyncPolicy{}, fmt.Errorf("sync policy %q: want always, never or an interval of at least 1ms like 10ms", s)
	}
	return queued.SyncPolicy{Mode: journal.SyncInterval, Interval: d}, nil
}
