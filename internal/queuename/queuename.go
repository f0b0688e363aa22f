// Package queuename owns the queue-name rule, the one place every part of
// kpush checks a name: the daemon for every command (queued), the journal
// before a name becomes a file name (queued/journal), the producer before
// it sends (producer) and the worker for its work queue (worker).
//
// A queue name is 1 to 250 bytes of [A-Za-z0-9_-], with at most one '+'
// separating a fanout parent from its child, neither side empty
// ("parent+child" receives a copy of every item set on "parent").
// Kestrel itself forbids only '/', '~', '.' and a stray '+'; kpush also
// forbids spaces, control characters and anything outside the set, so a
// name never reaches the file system unchecked (docs/protocol.md, "Queue
// names").
//
// It uses the standard library only.
package queuename

import (
	"errors"
	"strconv"
	"strings"
)

// MaxLen is the longest queue name, in bytes, as in Kestrel.
const MaxLen = 250

// Rule says what a valid name is, for error replies and messages.
const Rule = "1-250 bytes of [A-Za-z0-9_-] with at most one '+'"

// ErrInvalid is wrapped by every error Check returns.
var ErrInvalid = errors.New("invalid queue name")

// Check returns nil if name is a valid queue name, otherwise an error that
// wraps ErrInvalid and says what is wrong.
func Check(name string) error {
	if why := problem(name); why != "" {
		return &nameError{name: name, why: why}
	}
	return nil
}

// Valid reports whether name is a valid queue name. It builds no error
// value, for the daemon's hot path (a []byte straight from the request).
func Valid[T ~string | ~[]byte](name T) bool { return problem(name) == "" }

// Parent returns the parent of a fanout queue "parent+child"; ok is false
// for a plain name.
func Parent(name string) (parent string, ok bool) {
	parent, _, ok = strings.Cut(name, "+")
	return parent, ok
}

// problem says what is wrong with name, or "" if nothing is.
func problem[T ~string | ~[]byte](name T) string {
	if len(name) == 0 {
		return "empty"
	}
	if len(name) > MaxLen {
		return "longer than 250 bytes"
	}
	plus := false
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		case c == '+':
			if plus {
				return "more than one '+'"
			}
			if i == 0 || i == len(name)-1 {
				return "'+' must separate two non-empty names (parent+child)"
			}
			plus = true
		default:
			return "only [A-Za-z0-9_-] and one '+' are allowed"
		}
	}
	return ""
}

type nameError struct{ name, why string }

func (e *nameError) Error() string {
	n := e.name
	if len(n) > 60 {
		n = n[:60] + "..."
	}
	return "invalid queue name " + strconv.Quote(n) + ": " + e.why
}

func (e *nameError) Unwrap() error { return ErrInvalid }
