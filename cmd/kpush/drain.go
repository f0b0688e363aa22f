package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kpush/kpush/internal/kestrel"
	"github.com/spf13/cobra"
)

// drain empties one queued server before it is taken away: see
// docs/operations.md, "Removing a server".
func init() {
	var (
		interval time.Duration
		timeout  time.Duration
		undo     bool
	)
	cmd := &cobra.Command{
		Use:   "drain HOST:PORT",
		Short: "Empty one queued server before removing it: make it read-only, wait until nothing is left on it",
		Long: `drain prepares a queued server for removal. It sets the server's status to
READONLY (kept across restarts): sets are refused, so producers place every
item on the other servers, while workers keep reading what is there. Then it
waits, printing what is left every --interval, until every queue on the
server is empty and no read is open, and exits 0: the server can be taken
out of --servers (or its StatefulSet scaled down) and its volume deleted.

Items in <queue>_retry come back to <queue> when their delay ends, so a
draining server may wait up to the longest re-queue delay. Records in
<queue>_invalid_tokens and <queue>_failed are for your application: drain
waits for it to read them too.

--undo sets the status back to UP (a server that will stay).`,
		Example: `  kpush drain queued-3.queued.kpush.svc.cluster.local:22133
  kubectl exec -n kpush queued-3 -- kpush drain 127.0.0.1:22133 --timeout 1h`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			return runDrain(ctx, cmd.OutOrStdout(), args[0], interval, timeout, undo)
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often to check and print what is left")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up (exit 1) when the server is not empty after this long; 0 waits until it is")
	cmd.Flags().BoolVar(&undo, "undo", false, "set the server's status back to UP and exit")
	rootCmd.AddCommand(cmd)
}

func runDrain(ctx context.Context, out io.Writer, addr string, interval, timeout time.Duration, undo bool) error {
	if interval <= 0 {
		return fmt.Errorf("drain: --interval %v: must be positive", interval)
	}
	status := "readonly"
	if undo {
		status = "up"
	}
	if err := drainCommand(ctx, addr, func(c *kestrel.Conn) error { return c.SetStatus(status) }); err != nil {
		return err
	}
	if undo {
		fmt.Fprintf(out, "%s: status UP: taking items again\n", addr)
		return nil
	}
	fmt.Fprintf(out, "%s: status READONLY: producers place items elsewhere, workers keep reading it\n", addr)
	// The timeout bounds the wait for the server to empty; each command
	// has its own I/O timeout.
	wait := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		wait, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	last := ""
	for {
		left, err := drainLeft(ctx, addr)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			fmt.Fprintf(out, "%s: empty: no item waiting, no read open; it can be removed (its data directory holds nothing to deliver)\n", addr)
			return nil
		}
		if line := strings.Join(left, " "); line != last {
			fmt.Fprintf(out, "%s: left: %s\n", addr, line)
			last = line
		}
		t := time.NewTimer(interval)
		select {
		case <-wait.Done():
			t.Stop()
			return fmt.Errorf("drain %s: stopped before it was empty (%v); left: %s; it stays READONLY (kpush drain --undo %s to take items again)",
				addr, wait.Err(), strings.Join(left, " "), addr)
		case <-t.C:
		}
	}
}

// drainLeft returns "queue=items+open" for every queue with items or open
// reads on addr.
func drainLeft(ctx context.Context, addr string) ([]string, error) {
	var lines []kestrel.Stat
	err := drainCommand(ctx, addr, func(c *kestrel.Conn) (err error) {
		lines, err = c.Stats()
		return err
	})
	if err != nil {
		return nil, err
	}
	stats := map[string]int64{}
	var names []string
	for i, l := range lines {
		n, _ := strconv.ParseInt(l.Value, 10, 64)
		stats[l.Name] = n
		// Each queue's block starts queue_<name>_items, queue_<name>_bytes
		// (names may hold '_', so the pair finds where the name ends).
		if prefix, ok := strings.CutSuffix(l.Name, "_items"); ok && strings.HasPrefix(prefix, "queue_") && i+1 < len(lines) &&
			lines[i+1].Name == prefix+"_bytes" {
			names = append(names, strings.TrimPrefix(prefix, "queue_"))
		}
	}
	var left []string
	for _, q := range names {
		items, open := stats["queue_"+q+"_items"], stats["queue_"+q+"_open_transactions"]
		switch {
		case open > 0:
			left = append(left, fmt.Sprintf("%s=%d+%d_open", q, items, open))
		case items > 0:
			left = append(left, fmt.Sprintf("%s=%d", q, items))
		}
	}
	slices.Sort(left)
	return left, nil
}

// drainCommand connects to addr and runs f on the connection, all of it
// within 10 s.
func drainCommand(ctx context.Context, addr string, f func(c *kestrel.Conn) error) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := kestrel.Dial(dctx, addr, kestrel.Options{})
	if err != nil {
		return fmt.Errorf("drain %s: %w (is kpush queued running there?)", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := f(c); err != nil {
		return fmt.Errorf("drain %s: %w", addr, err)
	}
	return nil
}
