package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/kpush/kpush/queued"
)

func init() {
	var (
		listen      string
		dataDir     string
		configPath  string
		syncFlag    string
		adminListen string
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
				if cfg, err = queued.LoadConfigFile(configPath); err != nil {
					return err
				}
			}
			flags := cmd.Flags()
			var syncPolicy *queued.SyncPolicy
			if flags.Changed("sync") {
				p, err := queued.ParseSyncPolicy(syncFlag)
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
			queued.Version = versionString()
			if os.Getenv("GOGC") == "" {
				// The heap is mostly long-lived item data, already bounded
				// by max_memory_size; the default GOGC=100 would let the
				// process grow to twice that. 50 keeps it near 1.5x.
				debug.SetGCPercent(50)
			}
			srv, err := queued.NewServer(cfg, slog.Default())
			if err != nil {
				return err
			}
			srv.SetReloader(func() (queued.Config, error) {
				c, err := cfg.Reload(configPath)
				if err != nil {
					return c, err
				}
				return applyFlags(c), nil
			})
			ctx, stop := signalContext()
			defer stop()
			if err := srv.ListenAndServe(ctx); err != nil {
				return err
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
	rootCmd.AddCommand(cmd)
}
