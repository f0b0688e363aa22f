package config

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kpush/kpush/queued"
)

// Write writes c as a config file that Parse reads back to
// the same Config: server keys, the queue defaults at top level, then a
// queues block with every queue's full settings. `kpush queued
// --print-config` style tools and the fuzz test use it.
func Write(w io.Writer, c queued.Config) error {
	bw := bufio.NewWriter(w)
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("write config: listen address %q: %w", c.Listen, err)
	}
	q := quoteConfigString
	fmt.Fprintf(bw, "host = %s\nport = %s\nqueue_path = %s\n", q(host), port, q(c.DataDir))
	if c.AdminListen != "" {
		fmt.Fprintf(bw, "admin_listen = %s\n", q(c.AdminListen))
	}
	fmt.Fprintf(bw, "max_open_transactions = %d\n", c.MaxOpenTransactions)
	fmt.Fprintf(bw, "client_timeout = %q\n", c.ClientTimeout.String())
	fmt.Fprintf(bw, "max_connections = %d\n", c.MaxConnections)
	fmt.Fprintf(bw, "expiration_timer_frequency = %q\n", c.ExpirationTimerFrequency.String())
	fmt.Fprintf(bw, "total_memory_size = %d\n", c.TotalMemorySize)
	fmt.Fprintf(bw, "enable_shutdown_command = %t\n", c.EnableShutdown)
	fmt.Fprintf(bw, "log {\n  filename = %s\n  level = %s\n}\n", q(c.LogFile), q(c.LogLevel))
	writeQueueSettings(bw, c.Defaults, "")
	names := make([]string, 0, len(c.Queues))
	for name := range c.Queues {
		names = append(names, name)
	}
	slices.Sort(names)
	bw.WriteString("queues {\n")
	for _, name := range names {
		fmt.Fprintf(bw, "  %s {\n", name)
		writeQueueSettings(bw, c.Queues[name], "    ")
		bw.WriteString("  }\n")
	}
	bw.WriteString("}\n")
	return bw.Flush()
}

func writeQueueSettings(w io.Writer, qc queued.QueueConfig, indent string) {
	for _, kv := range qc.Settings() {
		v := kv[1]
		switch kv[0] {
		case "expire_to_queue":
			v = quoteConfigString(qc.ExpireToQueue)
		case "max_age", "open_transaction_timeout", "max_queue_age":
			// Settings rounds to milliseconds; write the exact duration.
			d := map[string]time.Duration{"max_age": qc.MaxAge,
				"open_transaction_timeout": qc.OpenTransactionTimeout, "max_queue_age": qc.MaxQueueAge}[kv[0]]
			v = strconv.Quote(d.String())
		case "sync_journal":
			v = strconv.Quote(v)
		}
		fmt.Fprintf(w, "%s%s = %s\n", indent, kv[0], v)
	}
}

// quoteConfigString quotes s with the escapes the lexer reads back; other
// bytes, even invalid UTF-8, are written as they are.
func quoteConfigString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 || c == 0x7f {
				fmt.Fprintf(&b, `\u%04x`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
