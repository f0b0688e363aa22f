package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kpush/kpush/discovery"
	"github.com/kpush/kpush/producer"
	"github.com/kpush/kpush/push"
)

// maxLineBytes bounds one JSON Lines record; a longer line is reported as
// bad instead of growing memory without limit.
const maxLineBytes = 1 << 20

// maxFailureReports bounds how many enqueue failures are printed one by one
// (a dead cluster would otherwise print one per line of a large file); all
// are counted in the summary.
const maxFailureReports = 20

type enqueueFlags struct {
	servers     []string
	resolve     time.Duration
	dnsServer   string
	queue       string
	file        string
	stopOnError bool
	concurrency int
	progress    bool
	timeout     time.Duration
	routingKey  string
	delay       time.Duration
	atLeastOnce bool
	message     messageFlags
}

func init() {
	var f enqueueFlags
	cmd := &cobra.Command{
		Use:   "enqueue",
		Short: "Put push messages on queued servers: one from flags, or many from a JSON Lines file",
		Long: `enqueue validates push messages and stores them on one or more queued servers.

One message from flags (the same flags as kpush push):

  kpush enqueue --token 1f0c4a7e...(64 hex digits) --topic com.example.app --alert "Hello" --badge 1 --data order:=42

Many from a JSON Lines file: one whole message object per line ("-" for
stdin; docs/message.md lists the fields):

  kpush enqueue --file messages.jsonl --servers q1:22133,q2:22133 --concurrency 32

Bad lines are reported as "line N: field: reason" on stderr and skipped
(or, with --stop-on-error, end the run). A progress bar counting messages is
drawn on stderr when it is a terminal (or with --progress). Once the run has
started, one summary line is printed on stdout, always in this format:

  sent=998 rejected=2 failed=0 elapsed=1.23s rate=811/s

sent: stored (a server answered STORED); rejected: invalid messages, never
sent; failed: valid messages no server stored (or whose outcome is unknown,
see docs/producer.md). The exit status is 0 only when rejected and failed are
both 0. A run that cannot start (bad flags, an invalid message from flags, a
missing --file, no server reachable) prints one line on stderr saying what
to fix, and no summary.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			return runEnqueue(ctx, cmd, &f)
		},
	}
	fl := cmd.Flags()
	addServersFlag(fl, &f.servers, "queued servers to store on")
	addDiscoveryFlags(fl, &f.resolve, &f.dnsServer)
	fl.StringVar(&f.queue, "queue", "push", "queue name")
	fl.StringVar(&f.file, "file", "", `JSON Lines file of messages, one whole message per line; "-" for stdin`)
	fl.BoolVar(&f.stopOnError, "stop-on-error", false, "stop at the first bad line instead of skipping it")
	fl.IntVar(&f.concurrency, "concurrency", 16, "messages in flight at once in --file mode (1 with --routing-key, to keep order)")
	fl.BoolVar(&f.progress, "progress", false, "draw the progress bar even when stderr is not a terminal")
	fl.DurationVar(&f.timeout, "timeout", producer.DefaultTimeout, "connect and per-request timeout for each server")
	fl.StringVar(&f.routingKey, "routing-key", "", "pin the messages to one server by consistent hashing of this key (keeps their order)")
	fl.DurationVar(&f.delay, "delay", 0, "set the items' Kestrel expiry to this long from now (for a delay queue with expire_to_queue)")
	fl.BoolVar(&f.atLeastOnce, "at-least-once", false, "when a server took a message but never answered, store it on another server too (duplicates possible)")
	f.message.register(fl)
	rootCmd.AddCommand(cmd)
}

// enqueueSummary counts outcomes; the counters are updated by the workers.
type enqueueSummary struct {
	sent, rejected, failed atomic.Int64
	start                  time.Time
}

func (s *enqueueSummary) String() string {
	elapsed := time.Since(s.start)
	rate := 0.0
	if secs := elapsed.Seconds(); secs > 0 {
		rate = float64(s.sent.Load()) / secs
	}
	return fmt.Sprintf("sent=%d rejected=%d failed=%d elapsed=%.2fs rate=%.0f/s",
		s.sent.Load(), s.rejected.Load(), s.failed.Load(), elapsed.Seconds(), rate)
}

func runEnqueue(ctx context.Context, cmd *cobra.Command, f *enqueueFlags) error {
	flags := cmd.Flags()
	fromFlags := len(f.message.msg.Tokens)+len(f.message.msg.FCMTokens) > 0
	given := f.message.given(flags)
	switch {
	case f.file != "" && len(given) > 0:
		return fmt.Errorf("enqueue: give either --file or message flags (%s), not both: the file's lines are whole messages", strings.Join(given, " "))
	case f.file == "" && len(given) > 0 && !fromFlags:
		return fmt.Errorf("enqueue: no --token or --fcm-token: a message needs at least one device token")
	case f.file == "" && !fromFlags:
		return fmt.Errorf("enqueue: nothing to send: give --token and --topic for one message, or --file F (JSON Lines, - for stdin)")
	case f.concurrency < 1:
		return fmt.Errorf("enqueue: --concurrency %d: must be at least 1", f.concurrency)
	}
	if err := producer.ValidateQueueName(f.queue); err != nil {
		return fmt.Errorf("enqueue: --queue: %w", err)
	}
	servers, err := serverAddrs(f.servers)
	if err != nil {
		return err
	}

	// Everything that can be checked without a server is checked before
	// connecting: the message from flags, the file.
	var (
		msg   *push.Message
		input *messageInput
	)
	if fromFlags {
		if msg, err = f.message.message(flags); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
		if err := msg.Validate(); err != nil {
			return fmt.Errorf("enqueue: invalid message, nothing sent: %s", describeInvalid(err))
		}
	} else {
		if input, err = openMessageInput(f.file, cmd.InOrStdin()); err != nil {
			return err
		}
		defer input.Close()
	}

	// The producer logs a server going down and coming back. One message's
	// outcome is the one line printed, so there it logs nothing; a file
	// run logs once something was stored: a server down from the start is
	// in the closing server summary (or, if all are, the one line).
	sum := &enqueueSummary{start: time.Now()}
	log := slog.New(slog.DiscardHandler)
	if !fromFlags {
		log = slog.New(gatedHandler{slog.Default().Handler(), func() bool { return sum.sent.Load() > 0 }})
	}
	opts := []producer.Option{
		producer.WithTimeout(f.timeout),
		producer.WithMaxIdleConns(max(f.concurrency, 2)),
		producer.WithLogger(log),
		producer.WithResolveInterval(f.resolve),
	}
	if f.dnsServer != "" {
		opts = append(opts, producer.WithResolver(discovery.NewResolver(f.dnsServer)))
	}
	if f.atLeastOnce {
		opts = append(opts, producer.WithAtLeastOnce())
	}
	p, err := producer.New(servers, opts...)
	if err != nil {
		return fmt.Errorf("enqueue: --servers %s: %w", strings.Join(servers, ","), err)
	}
	defer p.Close()

	var eopts []producer.EnqueueOption
	if flags.Changed("routing-key") {
		eopts = append(eopts, producer.RoutingKey(f.routingKey))
		f.concurrency = 1
	}
	if flags.Changed("delay") {
		eopts = append(eopts, producer.Delay(f.delay))
	}

	if fromFlags {
		if err := p.Enqueue(ctx, f.queue, msg, eopts...); err != nil {
			if u := unreachable(p, err); u != nil {
				return u
			}
			return fmt.Errorf("enqueue: not stored: %w", err)
		}
		sum.sent.Add(1)
		fmt.Fprintln(cmd.OutOrStdout(), sum)
		return nil
	}
	err = enqueueFromFile(ctx, f, input, p, eopts, sum, cmd.ErrOrStderr())
	var u *unreachableError
	if errors.As(err, &u) {
		return u
	}
	logServerStats(p)
	fmt.Fprintln(cmd.OutOrStdout(), sum)
	if err != nil {
		return err
	}
	if n := sum.rejected.Load() + sum.failed.Load(); n > 0 {
		return fmt.Errorf("enqueue: %d rejected, %d failed (see above)", sum.rejected.Load(), sum.failed.Load())
	}
	return nil
}

// gatedHandler passes records only while open() is true.
type gatedHandler struct {
	slog.Handler
	open func() bool
}

func (h gatedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.open() && h.Handler.Enabled(ctx, l)
}

func (h gatedHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return gatedHandler{h.Handler.WithAttrs(attrs), h.open}
}

func (h gatedHandler) WithGroup(name string) slog.Handler {
	return gatedHandler{h.Handler.WithGroup(name), h.open}
}

// unreachableError: no server of --servers could be connected to, and
// nothing was stored yet. Usually nothing is running at the address.
type unreachableError struct{ servers []string }

func (e *unreachableError) Error() string {
	return fmt.Sprintf("enqueue: no queued server reachable (%s): is kpush up or kpush queued running there? Check --servers", strings.Join(e.servers, ", "))
}

// unreachable returns an *unreachableError when err (from Enqueue) failed
// because every server is down and none has stored anything; else nil.
func unreachable(p *producer.Producer, err error) *unreachableError {
	if !errors.Is(err, producer.ErrNoServers) {
		return nil
	}
	stats := p.Stats()
	var servers []string
	if len(p.Servers()) == 0 {
		return nil // none found through DNS: the error says why
	}
	for _, addr := range p.Servers() {
		st := stats[addr]
		if st.Healthy || st.Stored > 0 {
			return nil
		}
		cause := st.LastError
		if i := strings.LastIndex(cause, ": "); i >= 0 {
			cause = cause[i+2:] // "dial tcp 127.0.0.1:1: connect: connection refused" -> "connection refused"
		}
		servers = append(servers, addr+": "+cause)
	}
	return &unreachableError{servers: servers}
}

// logServerStats logs one line per server with what it took, in the order
// the servers were given, so an operator sees where items went and which
// server failed.
func logServerStats(p *producer.Producer) {
	stats := p.Stats()
	for _, addr := range p.Servers() {
		st := stats[addr]
		args := []any{"server", addr, "state", serverState(st), "stored", st.Stored,
			"not_stored", st.NotStored, "failed", st.Failed, "unknown", st.Unknown, "rejected", st.Rejected}
		if st.LastError != "" {
			args = append(args, "last_error", st.LastError)
		}
		slog.Info("server summary", args...)
	}
}

// serverState says what is known of a server: "down" (being probed),
// "untried" (never sent anything: nothing is known) or "up".
func serverState(st producer.ServerStats) string {
	switch {
	case !st.Healthy:
		return "down"
	case st.Stored+st.NotStored+st.Failed+st.Unknown+st.Rejected == 0:
		return "untried"
	}
	return "up"
}

// describeInvalid renders a validation error as "field: reason".
func describeInvalid(err error) string {
	var ve *push.ValidationError
	if errors.As(err, &ve) {
		if strings.HasPrefix(ve.Field, "(") { // "(message)": not about one field
			return ve.Reason
		}
		return ve.Field + ": " + ve.Reason
	}
	return err.Error()
}

// messageInput is the opened --file: its reader, and the number of
// messages (non-blank lines) when known in advance (a regular file), else
// -1.
type messageInput struct {
	io.Reader
	lines int64
	close func() error
}

func (in *messageInput) Close() error { return in.close() }

// openMessageInput opens --file ("-": stdin) and counts a regular file's
// lines, for the progress bar.
func openMessageInput(name string, stdin io.Reader) (*messageInput, error) {
	if name == "-" {
		return &messageInput{Reader: stdin, lines: -1, close: func() error { return nil }}, nil
	}
	file, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("enqueue: --file: %w", err)
	}
	in := &messageInput{Reader: file, lines: -1, close: file.Close}
	if st, err := file.Stat(); err == nil && st.Mode().IsRegular() {
		n := int64(0)
		err := readJSONLines(context.Background(), file, func(int, []byte, bool) error { n++; return nil })
		if _, serr := file.Seek(0, io.SeekStart); err == nil && serr == nil {
			in.lines = n
		} else if serr != nil {
			file.Close()
			return nil, fmt.Errorf("enqueue: --file: %w", serr)
		}
	}
	return in, nil
}

// jsonLine is one record read from the file, numbered from 1.
type jsonLine struct {
	num int
	msg *push.Message
}

func enqueueFromFile(ctx context.Context, f *enqueueFlags, in *messageInput, p *producer.Producer, eopts []producer.EnqueueOption, sum *enqueueSummary, stderr io.Writer) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	// Messages go to stderr line by line; the bar shares it, so writes are
	// serialized and the bar is cleared before a message is printed. The
	// bar counts lines done (stored, failed or rejected), so it reaches
	// 100% when the last message has its outcome.
	var outMu sync.Mutex
	var bar *progressbar.ProgressBar
	if f.progress || isTerminal(os.Stderr) {
		bar = progressbar.NewOptions64(in.lines,
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription("enqueue"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetItsString("msg"),
			progressbar.OptionShowIts(),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(stderr) }),
		)
	}
	done := func() {
		if bar != nil {
			outMu.Lock()
			_ = bar.Add(1)
			outMu.Unlock()
		}
	}
	report := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		if bar != nil {
			_ = bar.Clear()
		}
		fmt.Fprintf(stderr, format, args...)
	}
	var failureReports atomic.Int64

	work := make(chan jsonLine, f.concurrency)
	var wg sync.WaitGroup
	for range f.concurrency {
		wg.Go(func() {
			for l := range work {
				err := p.Enqueue(ctx, f.queue, l.msg, eopts...)
				if err == nil {
					sum.sent.Add(1)
					done()
					continue
				}
				if u := unreachable(p, err); u != nil {
					// Nothing stored anywhere and every server down: a
					// setup mistake, reported once instead of per line.
					cancel(u)
					return
				}
				if ctx.Err() != nil {
					return
				}
				sum.failed.Add(1)
				done()
				if n := failureReports.Add(1); n <= maxFailureReports {
					report("line %d: %v\n", l.num, err)
				} else if n == maxFailureReports+1 {
					report("further enqueue failures are counted but not shown\n")
				}
			}
		})
	}

	// fragmentFrom is the line of a rejected message that went on over the
	// following lines (pretty-printed JSON); those lines are skipped, up
	// to the next line that starts a new object.
	fragmentFrom := 0
	runErr := readJSONLines(ctx, in, func(num int, raw []byte, tooLong bool) error {
		if fragmentFrom > 0 {
			if len(raw) == 0 || raw[0] != '{' {
				done()
				return nil
			}
			fragmentFrom = 0
		}
		var msg *push.Message
		var err error
		switch {
		case tooLong:
			err = fmt.Errorf("longer than %d bytes", maxLineBytes)
		case continuesOnNextLine(raw):
			fragmentFrom = num
			err = errors.New("the message goes on over the next lines: --file takes JSON Lines, one whole message per line (pretty-printed JSON must be compacted first); its other lines are skipped")
		default:
			msg, err = push.ParseMessage(raw)
		}
		if err != nil {
			sum.rejected.Add(1)
			done()
			if f.stopOnError {
				return fmt.Errorf("enqueue: stopped at line %d (--stop-on-error): %s", num, describeInvalid(err))
			}
			report("line %d: %s\n", num, describeInvalid(err))
			return nil
		}
		select {
		case work <- jsonLine{num: num, msg: msg}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(work)
	wg.Wait()
	var u *unreachableError
	if errors.As(context.Cause(ctx), &u) {
		return u
	}
	if bar != nil {
		_ = bar.Finish()
	}
	if errors.Is(runErr, context.Canceled) {
		return errors.New("enqueue: interrupted; the summary counts what was done")
	}
	return runErr
}

// continuesOnNextLine reports whether line is the start of a JSON object
// that does not end on it.
func continuesOnNextLine(line []byte) bool {
	if len(line) == 0 || line[0] != '{' {
		return false
	}
	var v json.RawMessage
	return errors.Is(json.NewDecoder(bytes.NewReader(line)).Decode(&v), io.ErrUnexpectedEOF)
}

// readJSONLines calls fn for each non-blank line of r with its 1-based
// number. A line over maxLineBytes is passed as tooLong (its bytes are
// discarded) rather than ending the read.
func readJSONLines(ctx context.Context, r io.Reader, fn func(num int, line []byte, tooLong bool) error) error {
	br := bufio.NewReaderSize(r, 64*1024)
	var buf []byte
	for num := 1; ; num++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		buf = buf[:0]
		tooLong := false
		var err error
		for {
			var chunk []byte
			chunk, err = br.ReadSlice('\n')
			if !tooLong {
				if len(buf)+len(chunk) > maxLineBytes+1 {
					tooLong, buf = true, buf[:0]
				} else {
					buf = append(buf, chunk...)
				}
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("enqueue: reading line %d: %w", num, err)
		}
		line := bytes.TrimSpace(buf)
		if tooLong || len(line) > 0 {
			if ferr := fn(num, line, tooLong); ferr != nil {
				return ferr
			}
		}
		if err != nil { // io.EOF
			return nil
		}
	}
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
