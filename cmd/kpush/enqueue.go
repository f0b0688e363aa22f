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
	servers      string
	queue        string
	file         string
	stopOnError  bool
	concurrency  int
	progress     bool
	timeout      time.Duration
	routingKey   string
	delay        time.Duration
	atLeastOnce  bool
	tokens       []string
	id           string
	topic        string
	pushType     string
	priority     int
	expiration   int64
	collapseID   string
	alert        string
	title        string
	subtitle     string
	body         string
	badge        int
	sound        string
	category     string
	threadID     string
	contentAvail bool
	mutable      bool
	data         []string
	dataJSON     []string
	payload      string
}

func init() {
	var f enqueueFlags
	cmd := &cobra.Command{
		Use:   "enqueue",
		Short: "Put push messages on queued servers: one from flags, or many from a JSON Lines file",
		Long: `enqueue validates push messages and stores them on one or more queued servers.

One message from flags:

  kpush enqueue --token 3f2a... --topic com.example.app --alert "Hello" --badge 1

Many from a JSON Lines file (one message object per line, "-" for stdin;
docs/message.md lists the fields):

  kpush enqueue --file messages.jsonl --servers q1:22133,q2:22133 --concurrency 32

Bad lines are reported as "line N: field: reason" on stderr and skipped
(or, with --stop-on-error, end the run). A progress bar is drawn on stderr
when it is a terminal (or with --progress). At the end one summary line is
printed on stdout, always in this format:

  sent=998 rejected=2 failed=0 elapsed=1.23s rate=811/s

sent: stored (a server answered STORED); rejected: invalid messages, never
sent; failed: valid messages no server stored (or whose outcome is unknown,
see docs/producer.md). The exit status is 0 only when rejected and failed are
both 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			return runEnqueue(ctx, cmd, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.servers, "servers", "127.0.0.1:22133", "comma-separated queued servers (host:port)")
	fl.StringVar(&f.queue, "queue", "push", "queue name")
	fl.StringVar(&f.file, "file", "", `JSON Lines file of messages, "-" for stdin`)
	fl.BoolVar(&f.stopOnError, "stop-on-error", false, "stop at the first bad line instead of skipping it")
	fl.IntVar(&f.concurrency, "concurrency", 16, "messages in flight at once in --file mode (1 with --routing-key, to keep order)")
	fl.BoolVar(&f.progress, "progress", false, "draw the progress bar even when stderr is not a terminal")
	fl.DurationVar(&f.timeout, "timeout", producer.DefaultTimeout, "connect and per-request timeout for each server")
	fl.StringVar(&f.routingKey, "routing-key", "", "pin the messages to one server by consistent hashing of this key (keeps their order)")
	fl.DurationVar(&f.delay, "delay", 0, "set the items' Kestrel expiry to this long from now (for a delay queue with expire_to_queue)")
	fl.BoolVar(&f.atLeastOnce, "at-least-once", false, "when a server took a message but never answered, store it on another server too (duplicates possible)")

	fl.StringArrayVar(&f.tokens, "token", nil, "device token, hex (repeat for several devices)")
	fl.StringVar(&f.id, "id", "", "message id (gives retries a stable apns-id)")
	fl.StringVar(&f.topic, "topic", "", "apns-topic: the app's bundle ID (plus the push type's suffix)")
	fl.StringVar(&f.pushType, "push-type", "", "apns-push-type (default alert)")
	fl.IntVar(&f.priority, "priority", 0, "apns-priority: 10, 5 or 1 (default: Apple's)")
	fl.Int64Var(&f.expiration, "expiration", 0, "apns-expiration, UNIX seconds")
	fl.StringVar(&f.collapseID, "collapse-id", "", "apns-collapse-id")
	fl.StringVar(&f.alert, "alert", "", "alert text (the body)")
	fl.StringVar(&f.title, "title", "", "alert title (dictionary form)")
	fl.StringVar(&f.subtitle, "subtitle", "", "alert subtitle (dictionary form)")
	fl.StringVar(&f.body, "body", "", "alert body (dictionary form)")
	fl.IntVar(&f.badge, "badge", 0, "badge number (0 clears it); unset leaves the badge alone")
	fl.StringVar(&f.sound, "sound", "", `sound file name or "default"`)
	fl.StringVar(&f.category, "category", "", "notification category")
	fl.StringVar(&f.threadID, "thread-id", "", "thread id for grouping")
	fl.BoolVar(&f.contentAvail, "content-available", false, "set content-available (background update)")
	fl.BoolVar(&f.mutable, "mutable-content", false, "set mutable-content (notification service extension)")
	fl.StringArrayVar(&f.data, "data", nil, "custom payload key=value, value as a string (repeatable)")
	fl.StringArrayVar(&f.dataJSON, "data-json", nil, `custom payload key=JSON, e.g. count=3 or ids=[1,2] (repeatable)`)
	fl.StringVar(&f.payload, "payload", "", "the whole APNs payload as JSON (replaces alert, badge, sound, data ...)")
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
	fromFlags := len(f.tokens) > 0
	switch {
	case f.file != "" && fromFlags:
		return errors.New("enqueue: give either --file or --token, not both")
	case f.file == "" && !fromFlags:
		return errors.New("enqueue: nothing to send: give --token and --topic for one message, or --file F (JSON Lines, - for stdin)")
	case f.concurrency < 1:
		return fmt.Errorf("enqueue: --concurrency %d: must be at least 1", f.concurrency)
	}
	if err := producer.ValidateQueueName(f.queue); err != nil {
		return fmt.Errorf("enqueue: --queue: %w", err)
	}
	var servers []string
	for _, s := range strings.Split(f.servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			servers = append(servers, s)
		}
	}
	opts := []producer.Option{
		producer.WithTimeout(f.timeout),
		producer.WithMaxIdleConns(max(f.concurrency, 2)),
		producer.WithLogger(slog.Default()),
	}
	if f.atLeastOnce {
		opts = append(opts, producer.WithAtLeastOnce())
	}
	p, err := producer.New(servers, opts...)
	if err != nil {
		return fmt.Errorf("enqueue: --servers %q: %w", f.servers, err)
	}
	defer p.Close()

	var eopts []producer.EnqueueOption
	if cmd.Flags().Changed("routing-key") {
		eopts = append(eopts, producer.RoutingKey(f.routingKey))
		f.concurrency = 1
	}
	if cmd.Flags().Changed("delay") {
		eopts = append(eopts, producer.Delay(f.delay))
	}

	sum := &enqueueSummary{start: time.Now()}
	stderr := cmd.ErrOrStderr()
	if fromFlags {
		err = enqueueFromFlags(ctx, cmd, f, p, eopts, sum)
	} else {
		err = enqueueFromFile(ctx, f, p, eopts, sum, stderr)
	}
	if !fromFlags || sum.failed.Load() > 0 {
		logServerStats(p)
	}
	fmt.Fprintln(cmd.OutOrStdout(), sum)
	if err != nil {
		return err
	}
	if n := sum.rejected.Load() + sum.failed.Load(); n > 0 {
		return fmt.Errorf("enqueue: %d rejected, %d failed (see above)", sum.rejected.Load(), sum.failed.Load())
	}
	return nil
}

func enqueueFromFlags(ctx context.Context, cmd *cobra.Command, f *enqueueFlags, p *producer.Producer, eopts []producer.EnqueueOption, sum *enqueueSummary) error {
	msg, err := messageFromFlags(cmd, f)
	if err == nil {
		err = msg.Validate()
	}
	if err != nil {
		sum.rejected.Add(1)
		fmt.Fprintf(cmd.ErrOrStderr(), "message: %s\n", describeInvalid(err))
		return nil
	}
	if err := p.Enqueue(ctx, f.queue, msg, eopts...); err != nil {
		sum.failed.Add(1)
		fmt.Fprintf(cmd.ErrOrStderr(), "message: %v\n", err)
		return nil
	}
	sum.sent.Add(1)
	return nil
}

// messageFromFlags builds the message of the one-message mode.
func messageFromFlags(cmd *cobra.Command, f *enqueueFlags) (*push.Message, error) {
	m := &push.Message{
		ID: f.id, Tokens: f.tokens, Topic: f.topic, PushType: f.pushType,
		Priority: f.priority, Expiration: f.expiration, CollapseID: f.collapseID,
		Sound: f.sound, Category: f.category, ThreadID: f.threadID,
		ContentAvailable: f.contentAvail, MutableContent: f.mutable,
	}
	switch {
	case f.title != "" || f.subtitle != "" || f.body != "":
		if f.alert != "" {
			return nil, &push.ValidationError{Field: "alert", Reason: "give --alert (text) or --title/--subtitle/--body, not both"}
		}
		m.Alert = &push.Alert{Title: f.title, Subtitle: f.subtitle, Body: f.body}
	case cmd.Flags().Changed("alert"):
		m.Alert = &push.Alert{Text: f.alert}
	}
	if cmd.Flags().Changed("badge") {
		badge := f.badge
		m.Badge = &badge
	}
	for _, kv := range f.data {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, &push.ValidationError{Field: "data", Reason: fmt.Sprintf("--data %q: want key=value", kv)}
		}
		if m.Data == nil {
			m.Data = map[string]any{}
		}
		m.Data[k] = v
	}
	for _, kv := range f.dataJSON {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, &push.ValidationError{Field: "data", Reason: fmt.Sprintf("--data-json %q: want key=JSON", kv)}
		}
		var val any
		dec := json.NewDecoder(strings.NewReader(v))
		dec.UseNumber()
		if err := dec.Decode(&val); err != nil || dec.More() {
			return nil, &push.ValidationError{Field: "data." + k, Reason: fmt.Sprintf("--data-json: %q is not one JSON value", v)}
		}
		if m.Data == nil {
			m.Data = map[string]any{}
		}
		m.Data[k] = val
	}
	if f.payload != "" {
		if !json.Valid([]byte(f.payload)) {
			return nil, &push.ValidationError{Field: "payload", Reason: "--payload is not valid JSON"}
		}
		m.Payload = json.RawMessage(f.payload)
	}
	return m, nil
}

// logServerStats logs one line per server with what it took, in the order
// the servers were given, so an operator sees where items went and which
// server failed.
func logServerStats(p *producer.Producer) {
	stats := p.Stats()
	for _, addr := range p.Servers() {
		st := stats[addr]
		args := []any{"server", addr, "healthy", st.Healthy, "stored", st.Stored,
			"not_stored", st.NotStored, "failed", st.Failed, "unknown", st.Unknown, "rejected", st.Rejected}
		if st.LastError != "" {
			args = append(args, "last_error", st.LastError)
		}
		slog.Info("server summary", args...)
	}
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

// jsonLine is one record read from the file, numbered from 1.
type jsonLine struct {
	num int
	msg *push.Message
}

func enqueueFromFile(ctx context.Context, f *enqueueFlags, p *producer.Producer, eopts []producer.EnqueueOption, sum *enqueueSummary, stderr io.Writer) error {
	var (
		in   io.Reader
		size int64 = -1
	)
	if f.file == "-" {
		in = os.Stdin
	} else {
		file, err := os.Open(f.file)
		if err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
		defer file.Close()
		if st, err := file.Stat(); err == nil && st.Mode().IsRegular() {
			size = st.Size()
		}
		in = file
	}

	// Messages go to stderr line by line; the bar shares it, so writes are
	// serialized and the bar is cleared before a message is printed.
	var outMu sync.Mutex
	var bar *progressbar.ProgressBar
	if f.progress || isTerminal(os.Stderr) {
		bar = progressbar.NewOptions64(size,
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription("enqueue"),
			progressbar.OptionShowBytes(size >= 0),
			progressbar.OptionShowCount(),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
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
				if err := p.Enqueue(ctx, f.queue, l.msg, eopts...); err != nil {
					sum.failed.Add(1)
					if n := failureReports.Add(1); n <= maxFailureReports {
						report("line %d: %v\n", l.num, err)
					} else if n == maxFailureReports+1 {
						report("further enqueue failures are counted but not shown\n")
					}
					continue
				}
				sum.sent.Add(1)
			}
		})
	}

	runErr := readJSONLines(ctx, in, func(num int, raw []byte, tooLong bool) error {
		if bar != nil {
			outMu.Lock()
			if size >= 0 {
				_ = bar.Add(len(raw) + 1)
			} else {
				_ = bar.Add(1)
			}
			outMu.Unlock()
		}
		var msg *push.Message
		var err error
		if tooLong {
			err = fmt.Errorf("longer than %d bytes", maxLineBytes)
		} else {
			msg, err = push.ParseMessage(raw)
		}
		if err != nil {
			sum.rejected.Add(1)
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
	if bar != nil {
		_ = bar.Finish()
	}
	if errors.Is(runErr, context.Canceled) {
		return errors.New("enqueue: interrupted; the summary counts what was done")
	}
	return runErr
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
