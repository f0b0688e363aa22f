package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpush/kpush/discovery"
	"github.com/kpush/kpush/producer"
	"github.com/kpush/kpush/push"
	"github.com/kpush/kpush/worker"
)

func init() {
	var (
		servers   []string
		dnsServer string
		cfg       worker.Config
		apns      push.Config
		fcm       push.FCMConfig
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Reliably fetch push messages from queued servers and deliver them to APNs and FCM",
		Long: `worker consumes push messages from every queued server in --servers (a fair
share from each), delivers them to APNs (tokens) and FCM (fcm_tokens) through
one fixed pool of --concurrency pushes, and confirms each queue item only
after all its tokens reached an outcome. A worker killed at any moment loses
nothing: the servers give back whatever it held (see docs/worker.md for the duplicates this can
cause).

--servers may name DNS records instead of servers: dns:NAME:PORT (every A
and AAAA address of NAME, e.g. a Kubernetes headless Service) or
dns+srv:NAME (SRV records). They are resolved every --resolve-interval: a
new server is read from at once; a server that disappears is read from no
more, and what was fetched from it is finished and confirmed. A failing
lookup keeps the servers last found (logged; kpush_worker_discovery_* in
/metrics). See docs/operations.md.

Give APNs credentials (--auth-key/--key-id/--team-id or --cert), FCM
credentials (--fcm-credentials), or both. A worker without one platform's
credentials dead-letters that platform's tokens to <queue>_failed, naming the
missing credentials, and goes on with the other platform.

Outcomes: dead tokens of both platforms go to <queue>_invalid_tokens (with
"platform": "apns" or "fcm"), transient failures are
retried and then re-queued with a delay through <queue>_retry (each server
needs  queues { <queue>_retry { expire_to_queue = "<queue>" } }  in its
config; without it, retries go straight back onto <queue>, with a warning),
undeliverable messages go to <queue>_failed. Bad credentials stop
the worker (exit 1) after returning everything it held.

SIGTERM or SIGINT: stop fetching, finish in-flight pushes within
--shutdown-timeout, give the rest back, exit 0.`,
		Example: `  kpush worker --servers 10.0.0.1:22133,10.0.0.2:22133 --queue push --concurrency 1000 \
    --auth-key AuthKey_ABC123DEFG.p8 --key-id ABC123DEFG --team-id DEF123GHIJ --admin-listen 127.0.0.1:9100
  kpush worker --servers dns:queued.default.svc.cluster.local:22133 \
    --auth-key /run/secrets/apns/auth-key.p8 --key-id ABC123DEFG --team-id DEF123GHIJ
  kpush worker --servers 127.0.0.1:22133 --apns-host https://127.0.0.1:2197 --apns-ca apns-sim-tls/ca.pem \
    --auth-key key.p8 --key-id ABC123DEFG --team-id DEF123GHIJ \
    --fcm-credentials fcm-sim-tls/service-account.json --fcm-endpoint https://127.0.0.1:4004 --fcm-ca fcm-sim-tls/ca.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if cfg.Servers, err = serverAddrs(servers); err != nil {
				return err
			}
			if cfg.SummaryInterval == 0 {
				cfg.SummaryInterval = -1 // 0 is worker.Config's "default"; here it means off
			}
			if cfg.ResolveInterval <= 0 {
				return fmt.Errorf("--resolve-interval %v: must be positive", cfg.ResolveInterval)
			}
			if dnsServer != "" {
				cfg.Resolver = discovery.NewResolver(dnsServer)
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			log := slog.Default()
			cfg.Logger = log
			apns.Logger = log
			if !cmd.Flags().Changed("apns-connections") {
				// Enough streams for every push in flight, and no more:
				// each extra connection carries fewer frames per read
				// and write, at a cost to both ends.
				apns.Connections = push.ConnectionsFor(cfg.Concurrency)
			}
			if os.Getenv("GOGC") == "" {
				// The live heap is small (items in flight, connection
				// buffers) while every push leaves a few KiB of garbage,
				// so at the default GOGC=100 the collector ran every few
				// thousand pushes and a quarter of the worker's CPU went
				// to it and to regrowing the stacks it shrinks. 400 cuts
				// that (docs/benchmarks.md) for a heap of tens of MiB.
				debug.SetGCPercent(400)
			}
			// At-least-once: a record whose STORED reply was lost is
			// stored again on another server rather than failing.
			prod, err := producer.New(cfg.Servers, producer.WithAtLeastOnce(), producer.WithLogger(log),
				producer.WithResolver(cfg.Resolver), producer.WithResolveInterval(cfg.ResolveInterval))
			if err != nil {
				return err
			}
			defer prod.Close()
			apnsSender, fcmSender, err := newSenders(apns, fcm, log)
			if err != nil {
				return err
			}
			var pusher worker.Pusher
			if apnsSender != nil {
				defer apnsSender.Close()
				pusher = apnsSender
			}
			if fcmSender != nil {
				defer fcmSender.Close()
				cfg.FCM = fcmSender
			}
			w, err := worker.New(cfg, pusher, prod)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			if err := w.Run(ctx); err != nil {
				return fmt.Errorf("worker stopped: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	addServersFlag(f, &servers, "queued servers to consume from")
	addDiscoveryFlags(f, &cfg.ResolveInterval, &dnsServer)
	f.StringVar(&cfg.Queue, "queue", "push", "queue to consume")
	f.IntVar(&cfg.Concurrency, "concurrency", 1000, "most pushes in flight (pool size), also the most queue items held open")
	f.IntVar(&cfg.LoopsPerServer, "loops-per-server", 2, "fetch connections per server")
	f.IntVar(&cfg.MonitorSeconds, "monitor-seconds", 1, "how long one monitor waits for items; bounds how long an idle connection delays its confirms")
	f.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long in-flight pushes may finish before the rest is given back")
	f.IntVar(&cfg.Attempts, "attempts", 3, "in-process attempts per token before a transient failure is re-queued with a delay")
	f.DurationVar(&cfg.RetryBase, "retry-base", 100*time.Millisecond, "base of the in-process retry backoff (full jitter)")
	f.IntVar(&cfg.MaxRequeues, "max-requeues", 10, "re-queues through <queue>_retry before a message is dead-lettered to <queue>_failed")
	f.BoolVar(&cfg.AllowMissingRetryQueue, "allow-missing-retry-queue", true, "when a server has no <queue>_retry delay queue, warn and re-queue retries onto <queue> without delay; =false refuses to start")
	f.StringVar(&cfg.AdminListen, "admin-listen", "", "serve /metrics and /healthz on this address (empty: off)")
	f.BoolVar(&cfg.Pprof, "pprof", false, "also serve Go profiles at /debug/pprof/ on the admin address (keep that address private)")
	f.DurationVar(&cfg.SummaryInterval, "status-interval", 10*time.Second, "period of the one-line status (msg=summary) in the log (0: off)")
	f.DurationVar(&apns.Backoff.ServerBase, "requeue-backoff", push.DefaultServerBackoff, "base delay of a re-queue after 5xx or network errors (full jitter, doubling per attempt)")
	f.DurationVar(&apns.Backoff.TokenBase, "requeue-backoff-token", push.DefaultTokenBackoff, "base delay of a re-queue after 429 TooManyRequests")
	apns.RegisterFlags(f)
	connectionsFollowConcurrency(f)
	fcm.RegisterFlags(f)
	aliasFlags(cmd, map[string]string{"summary-interval": "status-interval"})
	rootCmd.AddCommand(cmd)
}

// newSenders builds the sender of each platform whose credentials were
// given; at least one is required. A platform left out is logged, since
// its tokens will be dead-lettered.
func newSenders(apns push.Config, fcm push.FCMConfig, log *slog.Logger) (*push.Sender, *push.FCMSender, error) {
	apns.Logger, fcm.Logger = log, log
	hasAPNs := apns.AuthKeyFile != "" || apns.KeyID != "" || apns.TeamID != "" || apns.CertFile != ""
	hasFCM := fcm.CredentialsFile != ""
	if !hasAPNs && !hasFCM {
		return nil, nil, fmt.Errorf("%w\n%w", push.ErrNoCredentials, push.ErrNoFCMCredentials)
	}
	var (
		apnsSender *push.Sender
		fcmSender  *push.FCMSender
		err        error
	)
	if hasAPNs {
		if apnsSender, err = push.NewSender(apns); err != nil {
			return nil, nil, err
		}
	} else {
		log.Warn("no APNs credentials: APNs tokens will be dead-lettered to <queue>_failed (reason NoAPNsCredentials)")
	}
	if hasFCM {
		if fcmSender, err = push.NewFCMSender(fcm); err != nil {
			if apnsSender != nil {
				apnsSender.Close()
			}
			return nil, nil, err
		}
	} else {
		log.Warn("no FCM credentials: FCM tokens will be dead-lettered to <queue>_failed (reason NoFCMCredentials)")
	}
	return apnsSender, fcmSender, nil
}
