package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/kpush/kpush/push"
	"github.com/kpush/kpush/worker"
	"github.com/spf13/cobra"
)

func init() {
	var (
		cfg         push.Config
		fcm         push.FCMConfig
		messageFile string
		mf          messageFlags
		timeout     time.Duration
	)
	cfg.Connections = 1
	cmd := &cobra.Command{
		Use:   "push",
		Short: "Send one notification now and print the outcome",
		Long: `push sends one notification to APNs device tokens (--token) and FCM
registration tokens (--fcm-token), or to the simulators, and prints, per token,
the outcome: delivered with its apns-id or FCM message name, or the class
(dead-token, retry, bad-message, bad-credentials) and the service's reason. It
exits non-zero when any push was not delivered.

Build the message from flags (the same flags as kpush enqueue):
  kpush push --token HEX --topic com.example.app --alert "Hello" --badge 1 --data k=v --data n:=5
  kpush push --fcm-token TOKEN --fcm-credentials service-account.json --alert "Hello"
or give a JSON message (docs/message.md) with --message FILE ("-" for stdin).
--data k=v sets a string; --data k:=JSON sets any JSON value.

kpush up prints the credentials of its simulator; kpush apns-sim prints its
development key.`,
		Example: `  kpush push --auth-key AuthKey_ABC123DEFG.p8 --key-id ABC123DEFG --team-id DEF123GHIJ \
    --token 1f0c... --topic com.example.app --alert "Hello"
  kpush push --apns-host https://127.0.0.1:2197 --apns-ca data/apns-sim/ca.pem \
    --auth-key data/apns-sim/dev-key.p8 --key-id KPUSHSIM01 --team-id KPUSHDEV01 --message msg.json
  kpush push --fcm-credentials fcm-sim-tls/service-account.json --fcm-endpoint https://127.0.0.1:4004 \
    --fcm-ca fcm-sim-tls/ca.pem --fcm-token dX3... --alert "Hello" --android-channel-id orders`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var m *push.Message
			if messageFile != "" {
				if given := mf.given(cmd.Flags()); len(given) > 0 {
					return fmt.Errorf("--message and %s cannot be combined: put everything in the message file", strings.Join(given, " "))
				}
				b, err := readMessageFile(messageFile, cmd.InOrStdin())
				if err != nil {
					return err
				}
				if m, err = push.ParseMessage(b); err != nil {
					return fmt.Errorf("--message %s: %w", messageFile, err)
				}
			} else {
				var err error
				if m, err = mf.message(cmd.Flags()); err != nil {
					return err
				}
				if err := m.Validate(); err != nil {
					return err
				}
			}
			// Only the platforms the message addresses need credentials.
			type platform struct {
				sender worker.Pusher
				tokens []string
			}
			var platforms []platform
			if len(m.Tokens) > 0 {
				cfg.Logger = slog.Default()
				sender, err := push.NewSender(cfg)
				if err != nil {
					return err
				}
				defer sender.Close()
				platforms = append(platforms, platform{sender, m.Tokens})
			}
			if len(m.FCMTokens) > 0 {
				fcm.Logger = slog.Default()
				sender, err := push.NewFCMSender(fcm)
				if err != nil {
					return err
				}
				defer sender.Close()
				platforms = append(platforms, platform{sender, m.FCMTokens})
			}
			ctx, cancel := signalContext()
			defer cancel()
			out := cmd.OutOrStdout()
			failed, total := 0, 0
			for _, p := range platforms {
				for _, tok := range p.tokens {
					pctx, pcancel := context.WithTimeout(ctx, timeout)
					res := p.sender.Send(pctx, m, tok)
					pcancel()
					printResult(out, res)
					total++
					if !res.OK() {
						failed++
					}
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d pushes not delivered", failed, total)
			}
			return nil
		},
	}
	f := cmd.Flags()
	cfg.RegisterFlags(f)
	fcm.RegisterFlags(f)
	mf.register(f)
	f.StringVar(&messageFile, "message", "", "JSON message file (docs/message.md); - reads stdin")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "give up on one push after this long")
	rootCmd.AddCommand(cmd)
}

func readMessageFile(name string, stdin io.Reader) ([]byte, error) {
	if name == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read message from stdin: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read --message: %w", err)
	}
	return b, nil
}

func printResult(w io.Writer, r push.Result) {
	tokenKey := "token"
	if r.Platform == push.PlatformFCM {
		tokenKey = "fcm-token"
	}
	switch {
	case r.OK() && r.Platform == push.PlatformFCM:
		fmt.Fprintf(w, "delivered fcm-token=%s name=%s\n", r.Token, r.Name)
		return
	case r.OK():
		fmt.Fprintf(w, "delivered token=%s apns-id=%s\n", r.Token, r.APNsID)
		return
	case r.Status == 0 && r.Err != nil && r.Reason == "":
		fmt.Fprintf(w, "%s %s=%s error=%q", r.Class, tokenKey, r.Token, r.Err.Error())
	default:
		fmt.Fprintf(w, "%s %s=%s status=%d reason=%s", r.Class, tokenKey, r.Token, r.Status, r.Reason)
		if r.Err != nil {
			fmt.Fprintf(w, " error=%q", r.Err.Error())
		}
	}
	if !r.Timestamp.IsZero() {
		fmt.Fprintf(w, " timestamp=%s", r.Timestamp.UTC().Format(time.RFC3339))
	}
	if r.Class == push.Retry {
		fmt.Fprintf(w, " retry-after=%s", r.RetryAfter.Round(time.Second))
	}
	if r.APNsID != "" {
		fmt.Fprintf(w, " apns-id=%s", r.APNsID)
	}
	fmt.Fprintln(w)
}
