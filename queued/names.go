package queued

import (
	"errors"
	"strings"
)

// MaxQueueNameLength is the longest queue name accepted, as in Kestrel.
const MaxQueueNameLength = 250

// ErrBadQueueName is wrapped by every queue-name validation error.
var ErrBadQueueName = errors.New("bad queue name")

// ValidateQueueName reports whether name may be used as a queue name: 1 to
// 250 bytes of [A-Za-z0-9_-], with at most one '+' separating a fanout
// parent from its child (neither side empty). Names become file names, so
// nothing else — no '/', '.', '~', spaces or control characters — is let
// through.
func ValidateQueueName(name string) error {
	if name == "" {
		return badName(name, "empty")
	}
	if len(name) > MaxQueueNameLength {
		return badName(name, "longer than 250 bytes")
	}
	plus := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		case c == '+':
			plus++
			if plus > 1 {
				return badName(name, "more than one '+'")
			}
			if i == 0 || i == len(name)-1 {
				return badName(name, "'+' must separate two non-empty names")
			}
		default:
			return badName(name, "only [A-Za-z0-9_-] and one '+' are allowed")
		}
	}
	return nil
}

// validName is ValidateQueueName for the hot path: no error value built.
func validName(name []byte) bool {
	if len(name) == 0 || len(name) > MaxQueueNameLength {
		return false
	}
	plus := 0
	for i, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		case c == '+':
			plus++
			if plus > 1 || i == 0 || i == len(name)-1 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

type nameError struct{ name, why string }

func (e *nameError) Error() string {
	n := e.name
	if len(n) > 60 {
		n = n[:60] + "..."
	}
	return "bad queue name " + strings.ToValidUTF8(quoteControl(n), "?") + ": " + e.why
}
func (e *nameError) Unwrap() error { return ErrBadQueueName }

func badName(name, why string) error { return &nameError{name: name, why: why} }

// quoteControl replaces bytes that would break a reply line.
func quoteControl(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// fanoutParent returns the parent of a fanout queue "parent+child".
func fanoutParent(name string) (string, bool) {
	p, _, ok := strings.Cut(name, "+")
	return p, ok
}
