package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpush/kpush/push/apnssim"
	"github.com/kpush/kpush/push/fcmsim"
)

func init() {
	var (
		listen    string
		cfg       fcmsim.Config
		failures  []string
		failRate  string
		latency   string
		rateLimit string
	)
	cmd := &cobra.Command{
		Use:   "fcm-sim",
		Short: "Run a local FCM (Firebase Cloud Messaging HTTP v1) simulator for development and load tests",
		Long: `fcm-sim is a local stand-in for Firebase Cloud Messaging's HTTP v1 API: one
HTTPS listener (HTTP/2 and HTTP/1.1) serving both the OAuth2 token endpoint and
POST /v1/projects/<project>/messages:send, with FCM's checks, status codes and
error bodies in FCM's order. It counts what it accepted at GET /sim/stats and
prints a summary on exit.

--tls-dir gets ca.pem, cert.pem, key.pem and service-account.json (a
development service account whose token_uri points at the simulator), created
when absent and reused when present. Senders use them with
  --fcm-credentials DIR/service-account.json --fcm-ca DIR/ca.pem --fcm-endpoint URL
(docs/fcm.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, f := range failures {
				fail, err := fcmsim.ParseFailure(f)
				if err != nil {
					return err
				}
				cfg.Failures = append(cfg.Failures, fail)
			}
			if failRate != "" {
				// Half 500 INTERNAL, half 503 UNAVAILABLE.
				f, err := fcmsim.ParseFailure("INTERNAL=" + failRate)
				if err != nil {
					return fmt.Errorf("--fail-rate %q: want a rate from 0 to 1, e.g. 0.2", failRate)
				}
				cfg.Failures = append(cfg.Failures, fcmsim.Failure{Code: "INTERNAL", Rate: f.Rate / 2}, fcmsim.Failure{Code: "UNAVAILABLE", Rate: f.Rate / 2})
			}
			if latency != "" {
				var err error
				if cfg.Latency, cfg.Jitter, err = apnssim.ParseLatency(latency); err != nil {
					return err
				}
			}
			if rateLimit != "" {
				var err error
				if cfg.RateLimit, err = apnssim.ParseRate(rateLimit); err != nil {
					return err
				}
			}
			dir, err := filepath.Abs(cfg.TLSDir)
			if err != nil {
				return fmt.Errorf("--tls-dir %s: %w", cfg.TLSDir, err)
			}
			cfg.TLSDir = dir
			cfg.Logger = slog.Default()
			sim, err := fcmsim.New(cfg)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			if err := sim.Start(listen); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "fcm-sim: project %s; point senders at it with --fcm-endpoint %s --fcm-ca %s --fcm-credentials %s\n",
				sim.Project(), sim.URL(), sim.CAFile(), sim.ServiceAccountFile())
			<-ctx.Done()
			sim.Close()
			sim.Stats().WriteSummary(cmd.OutOrStdout())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", fcmsim.DefaultAddr, "address to listen on")
	f.StringVar(&cfg.TLSDir, "tls-dir", "fcm-sim-tls", "directory with ca.pem, cert.pem, key.pem and service-account.json (created when absent)")
	f.StringArrayVar(&cfg.TLSHosts, "tls-host", nil, "extra host name or IP for the generated certificate (repeatable); the first is also the host of the service account's token_uri, e.g. a compose service name")
	f.StringArrayVar(&cfg.TrustKeys, "trust-key", nil, "also accept access-token requests signed by this service-account JSON file or PEM public key (repeatable)")
	f.StringVar(&cfg.Project, "project", "", "Firebase project id to serve (default: the service account's, "+fcmsim.DevProject+" when created)")
	f.DurationVar(&cfg.TokenTTL, "token-ttl", fcmsim.DefaultTokenTTL, "lifetime of issued access tokens; short ones exercise renewal")
	f.StringArrayVar(&cfg.DeadTokens, "dead-token", nil, "registration token that always gets 404 UNREGISTERED (repeatable)")
	f.StringArrayVar(&cfg.MismatchTokens, "mismatch-token", nil, "registration token of another project: 403 SENDER_ID_MISMATCH (repeatable)")
	f.StringArrayVar(&failures, "fail", nil, "inject CODE at RATE into would-be 200s, e.g. UNAVAILABLE=0.2 or QUOTA_EXCEEDED=5% (repeatable)")
	f.StringVar(&failRate, "fail-rate", "", "answer this fraction of would-be 200s with 500 INTERNAL or 503 UNAVAILABLE (half each), with Retry-After")
	f.StringVar(&rateLimit, "rate-limit", "", "sends per registration token before 429 QUOTA_EXCEEDED with Retry-After, e.g. 5/s")
	f.DurationVar(&cfg.RetryAfter, "retry-after", time.Second, "Retry-After of 429, 500 and 503 answers (rounded up to seconds)")
	f.StringVar(&latency, "latency", "", "delay before each 200, e.g. 5ms or 5ms±2ms")
	rootCmd.AddCommand(cmd)
}
