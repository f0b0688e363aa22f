package main

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/kpush/kpush/push/apnssim"
	"github.com/spf13/cobra"
)

func init() {
	var (
		listen     string
		cfg        apnssim.Config
		failures   []string
		latency    string
		rateLimit  string
		tokenHexes int
	)
	cmd := &cobra.Command{
		Use:   "apns-sim",
		Short: "Run a local APNs simulator (HTTP/2 over TLS) for development and load tests",
		Long: `apns-sim is a local stand-in for Apple's APNs provider API: HTTP/2 over TLS,
POST /3/device/<token>, Apple's header checks, provider-token (JWT) checks,
status codes and JSON reasons, in Apple's order. It counts what it accepted at
GET /sim/stats and prints a summary on exit.

The TLS files (ca.pem, cert.pem, key.pem) are created in --tls-dir when absent
and reused when present; clients trust them with --apns-ca DIR/ca.pem.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, f := range failures {
				fail, err := apnssim.ParseFailure(f)
				if err != nil {
					return err
				}
				cfg.Failures = append(cfg.Failures, fail)
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
			cfg.TokenHexLen = tokenHexes
			dir, err := filepath.Abs(cfg.TLSDir)
			if err != nil {
				return fmt.Errorf("--tls-dir %s: %w", cfg.TLSDir, err)
			}
			cfg.TLSDir = dir
			cfg.Logger = slog.Default()
			// Written before the listener opens, so a client that waits for
			// the simulator to answer finds the key there.
			keyFile, err := apnssim.EnsureDevKey(cfg.TLSDir)
			if err != nil {
				return err
			}
			sim, err := apnssim.New(cfg)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			if err := sim.Start(listen); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "apns-sim: point clients at it with --apns-host %s --apns-ca %s\n", sim.URL(), sim.CAFile())
			fmt.Fprintf(cmd.OutOrStdout(), "apns-sim: without an Apple key, sign with --auth-key %s --key-id %s --team-id %s\n", keyFile, apnssim.DevKeyID, apnssim.DevTeamID)
			<-ctx.Done()
			sim.Close()
			sim.Stats().WriteSummary(cmd.OutOrStdout())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", apnssim.DefaultAddr, "address to listen on")
	f.StringVar(&cfg.TLSDir, "tls-dir", "apns-sim-tls", "directory with ca.pem, cert.pem, key.pem (created when absent)")
	f.StringArrayVar(&cfg.TLSHosts, "tls-host", nil, "extra host name or IP for the generated certificate, e.g. a compose service name (repeatable)")
	f.StringArrayVar(&cfg.TrustKeys, "trust-key", nil, "verify provider-token signatures with this .p8 key or PEM public key (repeatable)")
	f.StringArrayVar(&cfg.DeadTokens, "dead-token", nil, "device token (hex) that always gets 410 Unregistered (repeatable)")
	f.StringArrayVar(&failures, "fail", nil, "inject REASON at RATE into would-be 200s, e.g. ServiceUnavailable=0.2 (repeatable)")
	f.StringVar(&latency, "latency", "", "delay before each 200, e.g. 5ms or 5ms±2ms")
	f.StringVar(&rateLimit, "rate-limit", "", "pushes per device token before 429 TooManyRequests, e.g. 5/s")
	f.DurationVar(&cfg.RetryAfter, "retry-after", 0, "add Retry-After (seconds) to 429 and 503 answers; Apple sends none (0: off)")
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", 0, "close connections idle this long (0: never)")
	f.StringArrayVar(&cfg.Topics, "allow-topic", nil, "allowed bundle ID; others get TopicDisallowed (repeatable; none: any)")
	f.BoolVar(&cfg.Development, "development", false, "behave like Apple's sandbox (adds apns-unique-id)")
	f.StringVar(&cfg.ClientCAFile, "client-ca", "", "enable certificate auth: trust client certificates signed by this CA (PEM)")
	f.IntVar(&tokenHexes, "token-length", 64, "device-token length in hex digits (-1: any even length)")
	aliasFlags(cmd, map[string]string{"topic": "allow-topic"})
	rootCmd.AddCommand(cmd)
}
