package config

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/kpush/kpush/internal/queuename"
	"github.com/kpush/kpush/queued"
)

// kestrelUnusedKeys are keys found in Kestrel 1.x config files that queued
// accepts and ignores (logged at debug): they tune the JVM server or MINA.
var kestrelUnusedKeys = map[string]bool{
	"max_threads": true, "protocol": true, "multifile": true,
}

// interpreter walks the parsed tree and fills a Config.
type interpreter struct {
	file string
	log  *slog.Logger
	cfg  queued.Config
	port string // from `port`, joined with host at the end
	host string
}

func (in *interpreter) valueErr(v *cfgValue, key, want string) error {
	return &Error{File: in.file, Line: v.pos.line, Col: v.pos.col,
		Msg: fmt.Sprintf("%s: want %s, got %s", key, want, v.describe()), Kind: ErrValue}
}

func (v *cfgValue) describe() string {
	switch v.kind {
	case valString:
		return fmt.Sprintf("string %q", v.text)
	case valList:
		return "a list"
	}
	return strconv.Quote(v.text)
}

func (in *interpreter) warnUnknown(e *cfgEntry, where string) {
	in.log.Warn("unknown config key ignored", "at", fmt.Sprintf("%s:%d", in.file, e.pos.line), "key", e.key, "block", where)
}

func (in *interpreter) scalar(e *cfgEntry, want string) (*cfgValue, error) {
	if e.block != nil {
		return nil, &Error{File: in.file, Line: e.pos.line, Col: e.pos.col,
			Msg: fmt.Sprintf("%s: want %s, got a block", e.key, want), Kind: ErrValue}
	}
	if e.value.kind == valList {
		return nil, in.valueErr(e.value, e.key, want)
	}
	return e.value, nil
}

func (in *interpreter) str(e *cfgEntry) (string, error) {
	v, err := in.scalar(e, "a string")
	if err != nil {
		return "", err
	}
	return v.text, nil
}

func (in *interpreter) boolean(e *cfgEntry) (bool, error) {
	v, err := in.scalar(e, "true, false, on or off")
	if err != nil {
		return false, err
	}
	switch strings.ToLower(v.text) {
	case "true", "on", "yes":
		return true, nil
	case "false", "off", "no":
		return false, nil
	}
	return false, in.valueErr(v, e.key, "true, false, on or off")
}

func (in *interpreter) integer(e *cfgEntry, lo, hi int64) (int64, error) {
	want := fmt.Sprintf("an integer from %d to %d", lo, hi)
	v, err := in.scalar(e, want)
	if err != nil {
		return 0, err
	}
	n, perr := strconv.ParseInt(v.text, 10, 64)
	if perr != nil || n < lo || n > hi {
		return 0, in.valueErr(v, e.key, want)
	}
	return n, nil
}

func (in *interpreter) size(e *cfgEntry) (int64, error) {
	const want = "a non-negative byte count (like 134217728 or 128M)"
	v, err := in.scalar(e, want)
	if err != nil {
		return 0, err
	}
	n, perr := parseSize(v.text)
	if perr != nil {
		return 0, in.valueErr(v, e.key, want)
	}
	return n, nil
}

func (in *interpreter) duration(e *cfgEntry, unit time.Duration, unitName string) (time.Duration, error) {
	want := fmt.Sprintf("a non-negative integer of %s or a duration like 1s", unitName)
	v, err := in.scalar(e, want)
	if err != nil {
		return 0, err
	}
	d, perr := parseDuration(v.text, unit)
	if perr != nil {
		return 0, in.valueErr(v, e.key, want)
	}
	return d, nil
}

func (in *interpreter) server(root *cfgBlock) error {
	c := &in.cfg
	for _, e := range root.entries {
		var err error
		switch e.key {
		case "port":
			var n int64
			n, err = in.integer(e, 0, 65535)
			in.port = strconv.FormatInt(n, 10)
		case "host":
			in.host, err = in.str(e)
		case "queue_path":
			c.DataDir, err = in.str(e)
		case "timeout": // Kestrel 1.x: seconds
			c.ClientTimeout, err = in.duration(e, time.Second, "seconds")
		case "client_timeout":
			c.ClientTimeout, err = in.duration(e, time.Millisecond, "milliseconds")
		case "max_open_transactions":
			var n int64
			n, err = in.integer(e, 1, 1<<20)
			c.MaxOpenTransactions = int(n)
		case "max_connections":
			var n int64
			n, err = in.integer(e, 0, 1<<30)
			c.MaxConnections = int(n)
		case "expiration_timer_frequency":
			c.ExpirationTimerFrequency, err = in.duration(e, time.Millisecond, "milliseconds")
		case "expiration_timer_frequency_seconds": // Kestrel 1.x
			c.ExpirationTimerFrequency, err = in.duration(e, time.Second, "seconds")
		case "total_memory_size":
			c.TotalMemorySize, err = in.size(e)
		case "enable_shutdown_command", "shutdown":
			c.EnableShutdown, err = in.boolean(e)
		case "admin_listen":
			c.AdminListen, err = in.str(e)
			if err == nil && c.AdminListen != "" {
				if _, _, serr := net.SplitHostPort(c.AdminListen); serr != nil {
					err = in.valueErr(e.value, e.key, "host:port")
				}
			}
		case "log":
			err = in.logBlock(e)
		case "queues":
			// handled by queues()
			if e.block == nil {
				err = &Error{File: in.file, Line: e.pos.line, Col: e.pos.col,
					Msg: "queues: want a block of queue blocks: queues { name { ... } }", Kind: ErrValue}
			}
		default:
			var known bool
			known, err = in.queueKey(&c.Defaults, e)
			if !known {
				if kestrelUnusedKeys[e.key] {
					in.log.Debug("kestrel config key not used by queued", "at", fmt.Sprintf("%s:%d", in.file, e.pos.line), "key", e.key)
				} else {
					in.warnUnknown(e, "top level")
				}
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (in *interpreter) logBlock(e *cfgEntry) error {
	if e.block == nil {
		return &Error{File: in.file, Line: e.pos.line, Col: e.pos.col,
			Msg: "log: want a block: log { filename = \"...\" level = \"info\" }", Kind: ErrValue}
	}
	for _, le := range e.block.entries {
		switch le.key {
		case "filename":
			f, err := in.str(le)
			if err != nil {
				return err
			}
			in.cfg.LogFile = f
		case "level":
			v, err := in.scalar(le, "a log level")
			if err != nil {
				return err
			}
			lvl, ok := kestrelLogLevel(v.text)
			if !ok {
				return in.valueErr(v, "log level", "debug, info, warning or error")
			}
			in.cfg.LogLevel = lvl
		default:
			// roll, console, utc, truncate, syslog_*, ...: configgy logging
			// options queued's slog setup has no use for.
			in.log.Debug("log option not used by queued", "at", fmt.Sprintf("%s:%d", in.file, le.pos.line), "key", le.key)
		}
	}
	return nil
}

// kestrelLogLevel maps configgy's level names to the slog names --log-level
// accepts.
func kestrelLogLevel(s string) (string, bool) {
	switch strings.ToLower(s) {
	case "trace", "debug", "all":
		return "debug", true
	case "info":
		return "info", true
	case "warning", "warn":
		return "warn", true
	case "error", "critical", "fatal", "off":
		return "error", true
	}
	return "", false
}

// queueKey applies one per-queue key to q. It reports false for keys that
// are not queue settings.
func (in *interpreter) queueKey(q *queued.QueueConfig, e *cfgEntry) (bool, error) {
	var err error
	switch e.key {
	case "max_items":
		q.MaxItems, err = in.integer(e, 0, 1<<62)
	case "max_size":
		q.MaxSize, err = in.size(e)
	case "max_item_size":
		q.MaxItemSize, err = in.size(e)
	case "max_age":
		q.MaxAge, err = in.duration(e, time.Millisecond, "milliseconds")
	case "max_memory_size":
		q.MaxMemorySize, err = in.size(e)
	case "max_journal_size":
		q.MaxJournalSize, err = in.size(e)
	case "max_journal_overflow":
		var n int64
		n, err = in.integer(e, 0, 1<<20)
		q.MaxJournalOverflow = int(n)
	case "max_journal_size_absolute":
		q.MaxJournalSizeAbsolute, err = in.size(e)
	case "discard_old_when_full":
		q.DiscardOldWhenFull, err = in.boolean(e)
	case "journal", "keep_journal":
		q.Journal, err = in.boolean(e)
	case "sync_journal":
		var v *cfgValue
		v, err = in.scalar(e, "always, never, true, false or an interval like 10ms")
		if err == nil {
			var perr error
			q.Sync, perr = ParseSyncPolicy(v.text)
			if perr != nil {
				err = in.valueErr(v, e.key, "always, never, true, false or an interval like 10ms")
			}
		}
	case "expire_to_queue", "move_expired_to":
		q.ExpireToQueue, err = in.str(e)
		if err == nil && q.ExpireToQueue != "" && !queuename.Valid(q.ExpireToQueue) {
			err = in.valueErr(e.value, e.key, "a queue name of letters, digits, '_', '-' and at most one '+'")
		}
	case "max_expire_sweep":
		var n int64
		n, err = in.integer(e, 0, 1<<30)
		q.MaxExpireSweep = int(n)
	case "fanout_only":
		q.FanoutOnly, err = in.boolean(e)
	case "open_transaction_timeout":
		q.OpenTransactionTimeout, err = in.duration(e, time.Millisecond, "milliseconds")
	case "max_queue_age":
		q.MaxQueueAge, err = in.duration(e, time.Millisecond, "milliseconds")
	default:
		return false, nil
	}
	return true, err
}

func (in *interpreter) queues(root *cfgBlock) error {
	e, ok := root.index["queues"]
	if !ok || e.block == nil {
		return nil
	}
	blocks := e.block
	for _, qe := range blocks.entries {
		if qe.block == nil {
			return &Error{File: in.file, Line: qe.pos.line, Col: qe.pos.col,
				Msg: fmt.Sprintf("queues: %s: want a queue block: %s { max_items = ... }", qe.key, qe.key), Kind: ErrValue}
		}
		if !queuename.Valid(qe.key) {
			return &Error{File: in.file, Line: qe.pos.line, Col: qe.pos.col,
				Msg: fmt.Sprintf("queue name %q: want letters, digits, '_' and '-'", qe.key), Kind: ErrValue}
		}
		q := in.cfg.Defaults
		if err := in.applyQueueBlock(&q, blocks, qe.block, map[string]bool{}); err != nil {
			return err
		}
		if q.ExpireToQueue == qe.key {
			// Written in the block: a mistake. Inherited from the defaults:
			// meant for the other queues (see Config.QueueConfig).
			for _, key := range []string{"expire_to_queue", "move_expired_to"} {
				if e, ok := qe.block.index[key]; ok {
					return &Error{File: in.file, Line: e.pos.line, Col: e.pos.col,
						Msg: fmt.Sprintf("queue %q: %s names the queue itself", qe.key, key), Kind: ErrValue}
				}
			}
			q.ExpireToQueue = ""
		}
		in.cfg.Queues[qe.key] = q
	}
	return nil
}

// applyQueueBlock applies b's settings over q, after those of the block it
// inherits from (configgy's inherit="name" attribute), if any.
func (in *interpreter) applyQueueBlock(q *queued.QueueConfig, siblings, b *cfgBlock, seen map[string]bool) error {
	if seen[b.name] {
		return &Error{File: in.file, Line: b.pos.line, Col: b.pos.col,
			Msg: fmt.Sprintf("queue %q: inherit loop", b.name), Kind: ErrValue}
	}
	seen[b.name] = true
	if b.inherit != "" {
		parent, ok := siblings.index[b.inherit]
		if !ok || parent.block == nil {
			return &Error{File: in.file, Line: b.pos.line, Col: b.pos.col,
				Msg: fmt.Sprintf("queue %q: inherit=%q: no such queue block", b.name, b.inherit), Kind: ErrValue}
		}
		if err := in.applyQueueBlock(q, siblings, parent.block, seen); err != nil {
			return err
		}
	}
	for _, e := range b.entries {
		known, err := in.queueKey(q, e)
		if err != nil {
			return err
		}
		if !known {
			if kestrelUnusedKeys[e.key] {
				in.log.Debug("kestrel config key not used by queued", "at", fmt.Sprintf("%s:%d", in.file, e.pos.line), "key", e.key)
			} else {
				in.warnUnknown(e, "queue "+b.name)
			}
		}
	}
	return nil
}

// parseDuration reads a Go duration ("1s", "10ms") or a bare non-negative
// integer counted in unit.
func parseDuration(s string, unit time.Duration) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > int64(1<<62)/int64(unit) {
			return 0, fmt.Errorf("duration %q out of range", s)
		}
		return time.Duration(n) * unit, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return d, nil
}

// parseSize reads a non-negative byte count: a bare integer, or one with a
// binary suffix K, M, G, T (also KB/KiB and so on; all powers of 1024, as
// Kestrel's storage conversions are).
func parseSize(s string) (int64, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	var mult int64
	switch strings.ToUpper(s[i:]) {
	case "":
		mult = 1
	case "K", "KB", "KIB":
		mult = 1 << 10
	case "M", "MB", "MIB":
		mult = 1 << 20
	case "G", "GB", "GIB":
		mult = 1 << 30
	case "T", "TB", "TIB":
		mult = 1 << 40
	default:
		return 0, fmt.Errorf("size %q: want a non-negative integer of bytes, optionally with K, M, G or T", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a non-negative integer of bytes up to 2^62, optionally with K, M, G or T", s)
	}
	return n * mult, nil
}
