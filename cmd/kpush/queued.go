package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kpush/kpush/queued"
	"github.com/kpush/kpush/queued/config"
	"github.com/kpush/kpush/queued/journal"
)

func init() {
	var (
		listen      string
		dataDir     string
		configPath  string
		syncFlag    string
		adminListen string
		pprofOn     bool
		shutdownOn  bool
	)
	cmd := &cobra.Command{
		Use:   "queued",
		Short: "Run the journaled queue daemon (Kestrel memcache protocol)",
		Long: `queued runs in the foreground, serving Kestrel's memcache text protocol.
Every set is journaled (and fsynced under --sync always) before STORED.
Flags override the config file. SIGINT/SIGTERM: stop accepting, return open
reads to their queues, sync and close the journals, exit 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := queued.DefaultConfig()
			if configPath != "" {
				var err error
				if cfg, err = config.Load(configPath); err != nil {
					return err
				}
			}
			flags := cmd.Flags()
			var syncPolicy *queued.SyncPolicy
			if flags.Changed("sync") {
				p, err := config.ParseSyncPolicy(syncFlag)
				if err != nil {
					return fmt.Errorf("--sync: %w", err)
				}
				syncPolicy = &p
			}
			applyFlags := func(c queued.Config) queued.Config {
				if flags.Changed("listen") || configPath == "" {
					c.Listen = listen
				}
				if flags.Changed("data-dir") || configPath == "" {
					c.DataDir = dataDir
				}
				if flags.Changed("admin-listen") {
					c.AdminListen = adminListen
				}
				c.Pprof = pprofOn
				if flags.Changed("enable-shutdown") {
					c.EnableShutdown = shutdownOn
				}
				if syncPolicy != nil {
					c.Defaults.Sync = *syncPolicy
					qs := make(map[string]queued.QueueConfig, len(c.Queues))
					for name, q := range c.Queues {
						q.Sync = *syncPolicy
						qs[name] = q
					}
					c.Queues = qs
				}
				return c
			}
			cfg = applyFlags(cfg)
			if configPath != "" {
				closeLog, err := applyConfigLog(cmd, cfg)
				if err != nil {
					return err
				}
				defer closeLog()
			}
			setQueuedVersion()
			if os.Getenv("GOGC") == "" {
				// The heap is mostly long-lived item data, already bounded
				// by max_memory_size; the default GOGC=100 would let the
				// process grow to twice that. 50 keeps it near 1.5x.
				debug.SetGCPercent(50)
			}
			srv, err := queued.NewServer(cfg, slog.Default())
			if err != nil {
				return explainStartError(err, "kpush queued")
			}
			srv.SetReloader(func() (queued.Config, error) {
				c, err := config.Reload(cfg, configPath)
				if err != nil {
					return c, err
				}
				return applyFlags(c), nil
			})
			ctx, stop := signalContext()
			defer stop()
			if err := srv.ListenAndServe(ctx); err != nil {
				return explainStartError(err, "kpush queued")
			}
			slog.Info("stopped", "service", "queued")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:22133", "address to serve the memcache protocol on")
	f.StringVar(&dataDir, "data-dir", "./data/queued", "directory of the journals (queue_path)")
	f.StringVar(&configPath, "config", "", "Kestrel 1.x config file")
	f.StringVar(&syncFlag, "sync", "always", "journal sync policy for every queue: always, never or an interval like 10ms")
	f.StringVar(&adminListen, "admin-listen", "", "address of the admin HTTP endpoints (/metrics, /healthz, /stats.json); empty = off")
	f.BoolVar(&pprofOn, "pprof", false, "also serve Go profiles at /debug/pprof/ on the admin address (keep that address private)")
	f.BoolVar(&shutdownOn, "enable-shutdown", false, "honour the protocol's shutdown command (enable_shutdown_command); off by default, since anyone who reaches the port could stop the daemon")
	rootCmd.AddCommand(cmd)
}

// explainStartError adds what to do to the two ways a second server on one
// machine fails at start: its data directory is another server's, or its
// port is taken.
func explainStartError(err error, command string) error {
	var locked *journal.DirLockedError
	switch {
	case errors.As(err, &locked):
		return fmt.Errorf("%w: stop that kpush up or kpush queued, or give this %s another --data-dir", err, command)
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("%w (is another kpush up or kpush queued running?): stop it, or give this %s another --listen, and another --data-dir too if the other uses this one", err, command)
	}
	return err
}

// applyConfigLog honours the config file's log { level filename } block:
// the level applies unless --log-level was given, and a filename adds that
// file (appended to, as Kestrel does) beside stderr.
func applyConfigLog(cmd *cobra.Command, cfg queued.Config) (func(), error) {
	level := logLevel
	if !cmd.Flags().Changed("log-level") && cfg.LogLevel != "" {
		level = cfg.LogLevel
	}
	stderr, err := newLogger(level, logFormat)
	if err != nil {
		return nil, fmt.Errorf("config log level: %w", err)
	}
	if cfg.LogFile == "" {
		slog.SetDefault(stderr)
		return func() {}, nil
	}
	f, err := os.OpenFile(cfg.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("config log filename: %w (fix log { filename } or create its directory)", err)
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level)) // validated by newLogger above
	opts := &slog.HandlerOptions{Level: lvl}
	var file slog.Handler = slog.NewTextHandler(f, opts)
	if logFormat == "json" {
		file = slog.NewJSONHandler(f, opts)
	}
	slog.SetDefault(slog.New(slog.NewMultiHandler(stderr.Handler(), file)))
	return func() { f.Close() }, nil
}
