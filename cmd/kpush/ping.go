package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/kpush/kpush/internal/kestrel"
	"github.com/spf13/cobra"
)

// ping is a health check that needs no shell or extra tools, so it works in
// the distroless image: docker-compose and systemd call it.
func init() {
	var timeout, wait time.Duration
	var caFile string
	cmd := &cobra.Command{
		Use:   "ping HOST[:PORT]|URL",
		Short: "Check that a queued server (host:port) or an HTTP endpoint (URL) answers",
		Long: `ping exits 0 when the target answers:

  kpush ping 127.0.0.1:22133                  queued: sends "version", expects "VERSION ..."
  kpush ping localhost                        the same on port 22133
  kpush ping http://127.0.0.1:22134/healthz   HTTP: expects a 2xx status
  kpush ping --tls-ca ca.pem https://127.0.0.1:2197/sim/stats

With --wait D it tries again (every 100 ms) until the target answers or D
has passed: for a script that starts a server and then uses it.`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch len(args) {
			case 0:
				return usageErrorf("ping: what should answer? Give a queued server (kpush ping 127.0.0.1:22133) or a URL (kpush ping http://127.0.0.1:22134/healthz)")
			case 1:
				return nil
			}
			return usageErrorf("ping: one target at a time, got %d: %s", len(args), strings.Join(args, " "))
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			target := args[0]
			ping := func() error { return pingHTTP(cmd, target, caFile, timeout) }
			if !strings.HasPrefix(target, "http://") && !strings.HasPrefix(target, "https://") {
				addrs, err := serverAddrs([]string{target})
				if err != nil {
					return err
				}
				ping = func() error { return pingQueued(cmd, addrs[0], timeout) }
			}
			deadline := time.Now().Add(wait)
			for {
				err := ping()
				if err == nil || !time.Now().Before(deadline) {
					if err != nil && wait > 0 {
						err = fmt.Errorf("%w (still failing after --wait %v)", err, wait)
					}
					return err
				}
				time.Sleep(100 * time.Millisecond)
			}
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "give up after this long")
	cmd.Flags().StringVar(&caFile, "tls-ca", "", "PEM file of the CA to trust for https URLs")
	cmd.Flags().DurationVar(&wait, "wait", 0, "keep trying until the target answers or this long has passed (0: one try)")
	rootCmd.AddCommand(cmd)
}

func pingQueued(cmd *cobra.Command, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := kestrel.Dial(ctx, addr, kestrel.Options{Timeout: timeout})
	if err != nil {
		return fmt.Errorf("ping %s: %w (is kpush up or kpush queued running there?)", addr, err)
	}
	defer c.Close()
	v, err := c.Version()
	if err != nil {
		return fmt.Errorf("ping %s: %w", addr, err)
	}
	fmt.Fprintln(cmd.OutOrStdout(), "VERSION "+v)
	return nil
}

func pingHTTP(cmd *cobra.Command, url, caFile string, timeout time.Duration) error {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return fmt.Errorf("ping: --tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("ping: --tls-ca %s: no PEM certificate in it", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	client := &http.Client{Transport: tr, Timeout: timeout}
	resp, err := client.Get(url)
	if err != nil {
		return fmt.Errorf("ping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("ping %s: %s", url, resp.Status)
	}
	fmt.Fprintln(cmd.OutOrStdout(), resp.Status)
	return nil
}
