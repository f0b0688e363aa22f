package main

import (
	"encoding/json"
	"errors"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/kpush/kpush/push"
)

// messageFlags build one push message from the command line. kpush push and
// kpush enqueue both register them, so a message is spelt the same way for
// both (docs/message.md, "From the command line").
type messageFlags struct {
	msg      push.Message // the fields bound directly to a flag
	alert    string
	title    string
	subtitle string
	body     string
	badge    int
	data     []string
	dataJSON []string // --data-json k=JSON, the old spelling of --data k:=JSON
	payload  string
	android  androidFlags
}

// register adds the message flags to fs.
func (m *messageFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&m.msg.Tokens, "token", nil, "APNs device token: 64 or more hex digits, even length (repeat for several devices)")
	fs.StringArrayVar(&m.msg.FCMTokens, "fcm-token", nil, "FCM registration token (repeatable)")
	fs.StringVar(&m.msg.ID, "id", "", "message id: gives each push a stable apns-id, the same on retries")
	fs.StringVar(&m.msg.Topic, "topic", "", "apns-topic: the app's bundle ID (plus the push type's suffix)")
	fs.StringVar(&m.msg.PushType, "push-type", "", "apns-push-type (default alert)")
	fs.IntVar(&m.msg.Priority, "priority", 0, "apns-priority: 10, 5 or 1 (default: Apple's)")
	fs.Int64Var(&m.msg.Expiration, "expiration", 0, "apns-expiration, UNIX seconds")
	fs.StringVar(&m.msg.CollapseID, "collapse-id", "", "apns-collapse-id (at most 64 bytes)")
	fs.StringVar(&m.alert, "alert", "", "alert text; with --title or --subtitle it is the body")
	fs.StringVar(&m.title, "title", "", "alert title")
	fs.StringVar(&m.subtitle, "subtitle", "", "alert subtitle")
	fs.StringVar(&m.body, "body", "", "alert body (same as --alert)")
	fs.IntVar(&m.badge, "badge", 0, "badge number (0 clears it); left out, the badge is left alone")
	fs.StringVar(&m.msg.Sound, "sound", "", `sound file name or "default"`)
	fs.StringVar(&m.msg.Category, "category", "", "aps.category")
	fs.StringVar(&m.msg.ThreadID, "thread-id", "", "aps.thread-id, for grouping")
	fs.BoolVar(&m.msg.ContentAvailable, "content-available", false, "set aps.content-available (background pushes)")
	fs.BoolVar(&m.msg.MutableContent, "mutable-content", false, "set aps.mutable-content (notification service extension)")
	fs.StringArrayVar(&m.data, "data", nil, "custom payload key: key=value sets a string, key:=JSON any JSON value, e.g. order:=42 (repeatable)")
	fs.StringArrayVar(&m.dataJSON, "data-json", nil, "old spelling: --data-json key=JSON is --data key:=JSON")
	_ = fs.MarkHidden("data-json")
	fs.StringVar(&m.payload, "payload", "", "the whole APNs payload as JSON (replaces alert, badge, sound, data ...)")
	m.android.register(fs)
}

// given returns the message flags set on the command line.
func (m *messageFlags) given(fs *pflag.FlagSet) []string {
	var names []string
	probe := pflag.NewFlagSet("", pflag.ContinueOnError)
	(&messageFlags{}).register(probe)
	probe.VisitAll(func(f *pflag.Flag) {
		if fs.Changed(f.Name) {
			names = append(names, "--"+f.Name)
		}
	})
	return names
}

// message builds the message; it does not validate it.
func (m *messageFlags) message(fs *pflag.FlagSet) (*push.Message, error) {
	msg := m.msg
	msg.Tokens = append([]string(nil), m.msg.Tokens...)
	msg.FCMTokens = append([]string(nil), m.msg.FCMTokens...)
	msg.Android = m.android.message(fs)
	switch {
	case m.title != "" || m.subtitle != "":
		body := m.body
		if m.alert != "" {
			if body != "" {
				return nil, errors.New("--alert and --body are both the alert's body: give one")
			}
			body = m.alert
		}
		msg.Alert = &push.Alert{Title: m.title, Subtitle: m.subtitle, Body: body}
	case fs.Changed("alert") && fs.Changed("body"):
		return nil, errors.New("--alert and --body are both the alert's body: give one")
	case fs.Changed("alert"):
		msg.Alert = &push.Alert{Text: m.alert}
	case fs.Changed("body"):
		msg.Alert = &push.Alert{Text: m.body}
	}
	if fs.Changed("badge") {
		badge := m.badge
		msg.Badge = &badge
	}
	pairs := append([]string(nil), m.data...)
	for _, kv := range m.dataJSON {
		k, v, _ := strings.Cut(kv, "=")
		pairs = append(pairs, k+":="+v)
	}
	for _, kv := range pairs {
		k, v, err := parseDataFlag(kv)
		if err != nil {
			return nil, err
		}
		if msg.Data == nil {
			msg.Data = map[string]any{}
		}
		msg.Data[k] = v
	}
	if m.payload != "" {
		if !json.Valid([]byte(m.payload)) {
			return nil, usageErrorf("--payload is not valid JSON")
		}
		msg.Payload = json.RawMessage(m.payload)
	}
	return &msg, nil
}

// parseDataFlag parses one --data value: key=value (the value a string) or
// key:=JSON (the value any JSON; numbers keep their exact text).
func parseDataFlag(kv string) (string, any, error) {
	if k, raw, ok := strings.Cut(kv, ":="); ok && k != "" && !strings.Contains(k, "=") {
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return "", nil, usageErrorf("--data %q: after := comes one JSON value, e.g. n:=5, ok:=true, ids:=[1,2] or name:='\"text\"'", kv)
		}
		if _, err := dec.Token(); err != io.EOF {
			return "", nil, usageErrorf("--data %q: after := comes one JSON value, e.g. n:=5, ok:=true, ids:=[1,2] or name:='\"text\"'", kv)
		}
		return k, v, nil
	}
	k, v, ok := strings.Cut(kv, "=")
	if !ok || k == "" {
		return "", nil, usageErrorf("--data %q: want key=value (a string) or key:=JSON (any JSON value)", kv)
	}
	return k, v, nil
}
