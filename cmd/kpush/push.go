package main

import (
	"context"
	"encoding/json"
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
		tokens      []string
		fcmTokens   []string
		android     androidFlags
		msg         push.Message
		alert       string
		title       string
		badge       int
		data        []string
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

Build the message from flags:
  kpush push --token HEX --topic com.example.app --alert "Hello" --badge 1 --data k=v
  kpush push --fcm-token TOKEN --fcm-credentials service-account.json --alert "Hello"
or give a JSON message (docs/message.md) with --message FILE ("-" for stdin).
--data k=v sets a string; --data k:=JSON sets any JSON value.`,
		Example: `  kpush push --auth-key AuthKey_ABC123DEFG.p8 --key-id ABC123DEFG --team-id DEF123GHIJ \
    --token 1f0c... --topic com.example.app --alert "Hello"
  kpush push --apns-host https://127.0.0.1:2197 --apns-ca apns-sim-tls/ca.pem ... --message msg.json
  kpush push --fcm-credentials fcm-sim-tls/service-account.json --fcm-endpoint https://127.0.0.1:4004 \
    --fcm-ca fcm-sim-tls/ca.pem --fcm-token dX3... --alert "Hello" --android-channel-id orders`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var m *push.Message
			if messageFile != "" {
				for _, name := range []string{"token", "fcm-token", "android-priority", "android-ttl", "android-collapse-key", "android-channel-id", "android-sound", "android-tag", "android-image", "alert", "title", "badge", "sound", "data", "push-type", "priority", "expiration", "collapse-id", "category", "thread-id", "content-available", "mutable-content", "id", "topic"} {
					if cmd.Flags().Changed(name) {
						return fmt.Errorf("--message and --%s cannot be combined: put everything in the message file", name)
					}
				}
				b, err := readMessageFile(messageFile, cmd.InOrStdin())
				if err != nil {
					return err
				}
				if m, err = push.ParseMessage(b); err != nil {
					return fmt.Errorf("--message %s: %w", messageFile, err)
				}
			} else {
				m = &msg
				m.Tokens = tokens
				m.FCMTokens = fcmTokens
				m.Android = android.message(cmd.Flags())
				if title != "" {
					m.Alert = &push.Alert{Title: title, Body: alert}
				} else if alert != "" {
					m.Alert = &push.Alert{Text: alert}
				}
				if cmd.Flags().Changed("badge") {
					m.Badge = &badge
				}
				if err := parseDataFlags(data, m); err != nil {
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
	android.register(f)
	f.StringVar(&messageFile, "message", "", "JSON message file (docs/message.md); - reads stdin")
	f.StringArrayVar(&tokens, "token", nil, "APNs device token in hex (repeatable)")
	f.StringArrayVar(&fcmTokens, "fcm-token", nil, "FCM registration token (repeatable)")
	f.StringVar(&msg.Topic, "topic", "", "apns-topic: the app's bundle ID (plus the push type's suffix)")
	f.StringVar(&alert, "alert", "", "alert text (the body when --title is given)")
	f.StringVar(&title, "title", "", "alert title")
	f.IntVar(&badge, "badge", 0, "badge number (0 clears it)")
	f.StringVar(&msg.Sound, "sound", "", `sound file name or "default"`)
	f.StringArrayVar(&data, "data", nil, "custom payload key: k=v (string) or k:=JSON (repeatable)")
	f.StringVar(&msg.PushType, "push-type", "", "apns-push-type (default alert)")
	f.IntVar(&msg.Priority, "priority", 0, "apns-priority: 10, 5 or 1 (default: Apple's)")
	f.Int64Var(&msg.Expiration, "expiration", 0, "apns-expiration in UNIX seconds")
	f.StringVar(&msg.CollapseID, "collapse-id", "", "apns-collapse-id (at most 64 bytes)")
	f.StringVar(&msg.Category, "category", "", "aps.category")
	f.StringVar(&msg.ThreadID, "thread-id", "", "aps.thread-id")
	f.BoolVar(&msg.ContentAvailable, "content-available", false, "set aps.content-available (background pushes)")
	f.BoolVar(&msg.MutableContent, "mutable-content", false, "set aps.mutable-content")
	f.StringVar(&msg.ID, "id", "", "message ID; derives a stable apns-id per token")
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

// parseDataFlags applies --data k=v (string) and k:=JSON (any value).
func parseDataFlags(pairs []string, m *push.Message) error {
	for _, kv := range pairs {
		if k, raw, ok := strings.Cut(kv, ":="); ok && k != "" && !strings.Contains(k, "=") {
			var v any
			if err := json.Unmarshal([]byte(raw), &v); err != nil {
				return fmt.Errorf("--data %q: the value after := must be JSON: %w", kv, err)
			}
			setData(m, k, v)
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--data %q: want key=value or key:=JSON", kv)
		}
		setData(m, k, v)
	}
	return nil
}

func setData(m *push.Message, k string, v any) {
	if m.Data == nil {
		m.Data = map[string]any{}
	}
	m.Data[k] = v
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
