package kestrel

import (
	"bytes"
	"fmt"
	"strings"
)

// Round trips for the commands that are not on a hot path. Each sends
// what is buffered along with its own request, and reads its reply.

// Version sends `version` and returns what follows "VERSION ".
func (c *Conn) Version() (string, error) {
	line, err := c.roundTrip("version")
	if err != nil {
		return "", err
	}
	v, ok := bytes.CutPrefix(line, []byte("VERSION "))
	if !ok {
		return "", c.replyError("version", line)
	}
	return string(v), nil
}

// Stat is one line of `stats`.
type Stat struct{ Name, Value string }

// Stats sends `stats` and returns its STAT lines in the server's order
// (queued lists each queue's stats together, queue_<name>_items first).
func (c *Conn) Stats() ([]Stat, error) {
	line, err := c.roundTrip("stats")
	var stats []Stat
	for ; err == nil; line, err = c.readLine(0) {
		if string(line) == "END" {
			return stats, nil
		}
		rest, ok := bytes.CutPrefix(line, []byte("STAT "))
		name, value, ok2 := strings.Cut(string(rest), " ")
		if !ok || !ok2 {
			return nil, fmt.Errorf("%w: %s sent %q in its stats", ErrProtocol, c.addr, line)
		}
		stats = append(stats, Stat{name, value})
	}
	return nil, err
}

// SetStatus sends `status <status>` (UP, READONLY or QUIESCENT, any case);
// a refusal is a *ReplyError.
func (c *Conn) SetStatus(status string) error {
	line, err := c.roundTrip("status " + status)
	if err != nil {
		return err
	}
	if string(line) != "END" {
		return c.replyError("status "+status, line)
	}
	return nil
}

// DumpConfig sends dump_config and returns its lines up to END. A server
// that does not know the command is reported as ErrProtocol.
func (c *Conn) DumpConfig() ([]string, error) {
	line, err := c.roundTrip("dump_config")
	var lines []string
	for ; err == nil; line, err = c.readLine(0) {
		s := string(line)
		if s == "END" {
			return lines, nil
		}
		if s == "ERROR" && len(lines) == 0 {
			return nil, fmt.Errorf("%w: %s does not know dump_config", ErrProtocol, c.addr)
		}
		lines = append(lines, s)
	}
	return nil, err
}

func (c *Conn) roundTrip(request string) ([]byte, error) {
	c.Command(request)
	if err := c.Flush(); err != nil {
		return nil, err
	}
	return c.readLine(0)
}

// ExpireTarget finds, in dump_config output, the expire_to_queue of the
// block for queue. It accepts kpush queued's snake_case keys and
// Kestrel's camelCase (expireToQueue), and block headers `queue 'name' {`
// or `name {`.
func ExpireTarget(lines []string, queue string) (target string, found bool) {
	in := false
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasSuffix(t, "{") {
			head := strings.TrimSpace(strings.TrimSuffix(t, "{"))
			head = strings.TrimPrefix(head, "queue ")
			head = strings.Trim(strings.TrimSpace(head), `'"`)
			in = head == queue
			if in {
				found = true
			}
			continue
		}
		if t == "}" {
			in = false
			continue
		}
		if !in {
			continue
		}
		key, val, ok := strings.Cut(t, "=")
		if !ok {
			continue
		}
		key = strings.TrimSpace(key)
		if key == "expire_to_queue" || key == "expireToQueue" {
			val = strings.Trim(strings.TrimSpace(val), `'"`)
			// Kestrel prints Scala Options as Some(x) / None.
			if v, ok := strings.CutPrefix(val, "Some("); ok {
				val = strings.TrimSuffix(v, ")")
			}
			if val == "None" || val == "none" || val == "(none)" {
				val = ""
			}
			target = val
		}
	}
	return target, found
}
