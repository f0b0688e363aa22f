// Command kpush is the single binary of the kpush push pipeline: the queue
// daemon, the producer and worker, the APNs sender and simulator, and tools.
//
// Each subcommand lives in its own file and registers itself with rootCmd
// from an init function, so subcommands can be added without touching this
// file.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

var (
	logLevel  string
	logFormat string
)

var rootCmd = &cobra.Command{
	Use:   "kpush",
	Short: "A high-concurrency push-notification pipeline built on a Kestrel-compatible queue",
	Long: `kpush is a push-notification pipeline in one binary:

  queued     a journaled queue daemon speaking Kestrel's memcache protocol
  enqueue    put push messages on one or many queued servers
  worker     reliably fetch messages and deliver them to APNs
  push       send one notification now
  apns-sim   a local APNs simulator for development and load tests
  up         the whole pipeline in one process, on embedded defaults
  drain      empty one queued server before removing it`,
	SilenceUsage:  true,
	SilenceErrors: true,
	PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
		logger, err := newLogger(logLevel, logFormat)
		if err != nil {
			return err
		}
		slog.SetDefault(logger)
		return nil
	},
}

func init() {
	rootCmd.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	rootCmd.PersistentFlags().StringVar(&logFormat, "log-format", "text", "log format: text or json")
}

// newLogger builds the process logger. Daemons announce each listener with
// the constant message "listening" and the fields service and addr; tests
// and scripts rely on that line to learn ports chosen with :0.
func newLogger(level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
}

// signalContext is cancelled by SIGINT or SIGTERM; every long-running
// subcommand derives its context from it so shutdown is orderly.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func main() {
	setUsageRules(rootCmd)
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "kpush:", err)
		if isUsageError(err) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
