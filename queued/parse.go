package queued

import (
	"bytes"
	"errors"
	"strconv"
	"time"
)

// Framing limits. A request line longer than MaxLineLength, or a set larger
// than AbsoluteMaxItemSize, cannot be a well-behaved client: it is refused
// before any buffer grows to hold it.
const (
	MaxLineLength       = 2048
	AbsoluteMaxItemSize = 64 << 20
	maxArgs             = 8
)

// ErrProtocol is wrapped by every framing error: after one the byte stream
// can no longer be trusted and the connection is closed.
var ErrProtocol = errors.New("protocol error")

// ProtocolError says why a request could not be framed. Reason is sent to
// the client after "CLIENT_ERROR ".
type ProtocolError struct{ Reason string }

func (e *ProtocolError) Error() string { return "protocol error: " + e.Reason }
func (e *ProtocolError) Unwrap() error { return ErrProtocol }

// Command is one framed request. Its slices alias the buffer it was parsed
// from and are valid only until that buffer is reused.
type Command struct {
	Name  []byte
	Args  [maxArgs][]byte // the first min(NArgs, maxArgs) arguments
	NArgs int             // how many arguments the line had
	Data  []byte          // the data block of a set, without its line ending
}

var cmdSet = []byte("set")

// ParseCommand frames the first request in buf. It returns the command and
// the number of bytes it used; n == 0 with a nil error means buf holds only
// part of a request. Errors are *ProtocolError.
func ParseCommand(buf []byte) (cmd Command, n int, err error) {
	cmd, n, _, err = frame(buf)
	return cmd, n, err
}

// frame is ParseCommand that also reports, for an incomplete request, how
// many bytes the whole request needs once that is known (a set whose header
// has arrived), so the caller can grow its buffer once.
func frame(buf []byte) (cmd Command, n, need int, err error) {
	eol := bytes.IndexByte(buf, '\n')
	if eol < 0 {
		if len(buf) > MaxLineLength {
			return cmd, 0, 0, &ProtocolError{Reason: "line too long"}
		}
		return cmd, 0, 0, nil
	}
	if eol > MaxLineLength {
		return cmd, 0, 0, &ProtocolError{Reason: "line too long"}
	}
	line := buf[:eol]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	tokenize(line, &cmd)
	n = eol + 1
	if !bytes.Equal(cmd.Name, cmdSet) {
		if !isOtherStorageCommand(cmd.Name) {
			return cmd, n, 0, nil
		}
		// memcache's other storage commands are not supported (they get
		// ERROR), but their data block is framed and skipped: it must never
		// be read as commands.
		if cmd.NArgs < 4 {
			return cmd, 0, 0, &ProtocolError{Reason: "bad " + string(cmd.Name) + " header: want <key> <flags> <exptime> <bytes>"}
		}
		size, ok := parseUint(cmd.Args[3], AbsoluteMaxItemSize)
		if !ok {
			return cmd, 0, 0, &ProtocolError{Reason: "bad data chunk: byte count must be 0.." + itoa(AbsoluteMaxItemSize)}
		}
		return frameData(buf, cmd, n, size)
	}
	// set <queue> <flags> <exptime> <bytes> [noreply]
	if cmd.NArgs < 4 || cmd.NArgs > 5 {
		return cmd, 0, 0, &ProtocolError{Reason: "bad set header: want set <queue> <flags> <exptime> <bytes> [noreply]"}
	}
	if _, ok := parseUint(cmd.Args[1], 1<<32-1); !ok {
		return cmd, 0, 0, &ProtocolError{Reason: "bad set header: flags must be a 32-bit unsigned number"}
	}
	if _, ok := parseInt(cmd.Args[2]); !ok {
		return cmd, 0, 0, &ProtocolError{Reason: "bad set header: exptime must be a number"}
	}
	size, ok := parseUint(cmd.Args[3], AbsoluteMaxItemSize)
	if !ok {
		return cmd, 0, 0, &ProtocolError{Reason: "bad data chunk: byte count must be 0.." + itoa(AbsoluteMaxItemSize)}
	}
	if cmd.NArgs == 5 && string(cmd.Args[4]) != "noreply" {
		return cmd, 0, 0, &ProtocolError{Reason: "bad set header: the 6th field may only be noreply"}
	}
	return frameData(buf, cmd, n, size)
}

func isOtherStorageCommand(name []byte) bool {
	switch string(name) {
	case "add", "replace", "append", "prepend", "cas":
		return true
	}
	return false
}

// frameData frames the data block of size bytes that follows a storage
// command's header line (n bytes).
func frameData(buf []byte, cmd Command, n int, size uint64) (Command, int, int, error) {
	rest := buf[n:]
	if len(rest) < int(size)+1 {
		return cmd, 0, n + int(size) + 2, nil
	}
	switch rest[size] {
	case '\n':
		cmd.Data = rest[:size]
		return cmd, n + int(size) + 1, 0, nil
	case '\r':
		if len(rest) < int(size)+2 {
			return cmd, 0, n + int(size) + 2, nil
		}
		if rest[size+1] != '\n' {
			return cmd, 0, 0, &ProtocolError{Reason: "bad data chunk: data longer than declared or not followed by \\r\\n"}
		}
		cmd.Data = rest[:size]
		return cmd, n + int(size) + 2, 0, nil
	default:
		return cmd, 0, 0, &ProtocolError{Reason: "bad data chunk: data longer than declared or not followed by \\r\\n"}
	}
}

// tokenize splits a request line on spaces (and tabs) without allocating.
func tokenize(line []byte, cmd *Command) {
	i := 0
	first := true
	for i < len(line) {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i == len(line) {
			break
		}
		start := i
		for i < len(line) && line[i] != ' ' && line[i] != '\t' {
			i++
		}
		tok := line[start:i]
		if first {
			cmd.Name = tok
			first = false
			continue
		}
		if cmd.NArgs < maxArgs {
			cmd.Args[cmd.NArgs] = tok
		}
		cmd.NArgs++
	}
}

// parseUint parses a decimal number no larger than max.
func parseUint(b []byte, max uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (max-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// parseInt parses a signed decimal number that fits in 63 bits.
func parseInt(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg = true
		b = b[1:]
	}
	v, ok := parseUint(b, 1<<63-1)
	if !ok {
		return 0, false
	}
	if neg {
		return -int64(v), true
	}
	return int64(v), true
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// getOptions are the /options of a get.
type getOptions struct {
	timeout                  time.Duration
	hasTimeout               bool
	open, close, abort, peek bool
}

func parseGetKey(key []byte) (name []byte, o getOptions, ok bool) {
	i := 0
	for i < len(key) && key[i] != '/' {
		i++
	}
	name = key[:i]
	for i < len(key) {
		i++ // skip '/'
		j := i
		for j < len(key) && key[j] != '/' {
			j++
		}
		opt := key[i:j]
		i = j
		switch {
		case string(opt) == "open":
			o.open = true
		case string(opt) == "close":
			o.close = true
		case string(opt) == "abort":
			o.abort = true
		case string(opt) == "peek":
			o.peek = true
		case len(opt) > 2 && opt[0] == 't' && opt[1] == '=':
			ms, okn := parseUint(opt[2:], 1<<31)
			if !okn {
				return name, o, false
			}
			o.timeout, o.hasTimeout = time.Duration(ms)*time.Millisecond, true
		default:
			return name, o, false
		}
	}
	if len(name) == 0 || ((o.peek || o.abort) && (o.open || o.close)) || (o.peek && o.abort) {
		return name, o, false
	}
	return name, o, true
}
