package push

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// FCM's limits and rules for a message (docs/fcm.md, "What FCM accepts").
const (
	// MaxFCMContentSize bounds an FCM message's content: data keys and
	// values plus the notification's text fields, in bytes.
	MaxFCMContentSize = 4096
	// MinFCMTokenLen and MaxFCMTokenLen bound a registration token's
	// length; its characters are letters, digits, '_', ':' and '-'.
	MinFCMTokenLen = 100
	MaxFCMTokenLen = 4096
	// MaxFCMTTL is the longest Android ttl FCM accepts: 28 days.
	MaxFCMTTL = 28 * 24 * time.Hour
)

// Android is the FCM-only part of a message: the "android" object of the
// JSON message, sent as the FCM message's AndroidConfig.
type Android struct {
	// Priority is "high" or "normal" (any case); empty leaves FCM's
	// default (high for notification messages, normal for data-only).
	Priority string `json:"priority,omitempty"`
	// TTL is how long FCM keeps the message for an offline device, 0 to
	// 28 days; nil leaves FCM's default (4 weeks).
	TTL *TTL `json:"ttl,omitempty"`
	// CollapseKey groups messages of which an offline device gets only
	// the last.
	CollapseKey string `json:"collapse_key,omitempty"`
	// ChannelID, Sound, Tag and Image go to the Android notification.
	ChannelID string `json:"channel_id,omitempty"`
	Sound     string `json:"sound,omitempty"`
	Tag       string `json:"tag,omitempty"`
	Image     string `json:"image,omitempty"`
}

// TTL is an Android time-to-live. It unmarshals from a number of seconds
// (3600, 0.5) or FCM's duration string ("3600s", "3.5s") and marshals to
// the string form.
type TTL struct{ time.Duration }

// MarshalJSON writes FCM's form: seconds with up to nine decimals and an
// "s" suffix.
func (t TTL) MarshalJSON() ([]byte, error) {
	return []byte(`"` + t.FCMString() + `"`), nil
}

// FCMString is the duration in FCM's wire form, e.g. "3600s" or "3.5s".
func (t TTL) FCMString() string {
	secs, nanos := int64(t.Duration/time.Second), int64(t.Duration%time.Second)
	if nanos == 0 {
		return strconv.FormatInt(secs, 10) + "s"
	}
	return strconv.FormatInt(secs, 10) + "." + strings.TrimRight(fmt.Sprintf("%09d", nanos), "0") + "s"
}

// UnmarshalJSON accepts a JSON number of seconds or a string "<seconds>s".
func (t *TTL) UnmarshalJSON(b []byte) error {
	text := strings.TrimSpace(string(b))
	if strings.HasPrefix(text, `"`) {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		num, ok := strings.CutSuffix(s, "s")
		if !ok {
			return fmt.Errorf("android.ttl %q: want seconds such as \"3600s\" or a number", s)
		}
		text = num
	}
	secs, err := strconv.ParseFloat(text, 64)
	if err != nil || secs != secs { // NaN
		return fmt.Errorf("android.ttl %s: want seconds such as \"3600s\" or a number", string(b))
	}
	if secs < 0 || secs > MaxFCMTTL.Seconds() {
		return fmt.Errorf("android.ttl %s: must be 0 to %d seconds (28 days)", string(b), int(MaxFCMTTL.Seconds()))
	}
	t.Duration = time.Duration(secs * float64(time.Second))
	return nil
}

// fcmPriority is the wire form of Android.Priority, "" when unset.
func (a *Android) fcmPriority() string { return strings.ToUpper(a.Priority) }

func (a *Android) validate() error {
	switch a.fcmPriority() {
	case "", "HIGH", "NORMAL":
	default:
		return invalid("android.priority", "%q is not high or normal", a.Priority)
	}
	if a.TTL != nil && (a.TTL.Duration < 0 || a.TTL.Duration > MaxFCMTTL) {
		return invalid("android.ttl", "%v is outside 0 to 28 days", a.TTL.Duration)
	}
	return nil
}

// ValidateFCMToken checks a registration token's form: 100 to 4096
// characters, each a letter, digit, '_', ':' or '-' (what FCM issues).
func ValidateFCMToken(tok string) error {
	switch {
	case tok == "":
		return errors.New("empty registration token")
	case len(tok) < MinFCMTokenLen:
		return fmt.Errorf("%d characters, an FCM registration token has at least %d", len(tok), MinFCMTokenLen)
	case len(tok) > MaxFCMTokenLen:
		return fmt.Errorf("%d characters, longer than %d", len(tok), MaxFCMTokenLen)
	}
	for i := 0; i < len(tok); i++ {
		if !fcmTokenChar(tok[i]) {
			return fmt.Errorf("character %q at %d: FCM registration tokens hold only letters, digits, '_', ':' and '-'", tok[i], i)
		}
	}
	return nil
}

func fcmTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == ':' || c == '-'
}

// ReservedFCMDataKey reports whether FCM refuses key in a message's data:
// "from", "message_type", and keys starting with "google" or "gcm".
func ReservedFCMDataKey(key string) bool {
	return key == "from" || key == "message_type" || strings.HasPrefix(key, "google") || strings.HasPrefix(key, "gcm")
}

// validateFCM checks the FCM side and returns the request body's tail.
func (m *Message) validateFCM() ([]byte, error) {
	seen := make(map[string]int, len(m.FCMTokens))
	for i, tok := range m.FCMTokens {
		field := fmt.Sprintf("fcm_tokens[%d]", i)
		if err := ValidateFCMToken(tok); err != nil {
			return nil, invalid(field, "%v", err)
		}
		if j, dup := seen[tok]; dup {
			return nil, invalid(field, "duplicate of fcm_tokens[%d] (it would be delivered twice)", j)
		}
		seen[tok] = i
	}
	keys := make([]string, 0, len(m.Data))
	for k := range m.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if ReservedFCMDataKey(k) {
			return nil, invalid("data."+k, `reserved by FCM ("from", "message_type" and keys starting with "google" or "gcm")`)
		}
	}
	fm, err := m.fcmMessage()
	if err != nil {
		return nil, err
	}
	if size := fm.contentSize(); size > MaxFCMContentSize {
		field := "alert"
		if len(fm.Data) > 0 {
			field = "data"
		}
		return nil, invalid(field, "the FCM message content (data keys and values, notification text) is %d bytes, over FCM's %d-byte limit", size, MaxFCMContentSize)
	}
	return fm.tail()
}

// FCMData converts Data to FCM's string-only map, the one conversion
// docs/message.md documents: a string stays as it is; any other value
// becomes its compact JSON text, exactly as it appears in the APNs
// payload (42 → "42", true → "true", {"a":1} → "{\"a\":1}", null →
// "null"), so parsing an Android value as JSON gives the iOS value.
func (m *Message) FCMData() (map[string]string, error) {
	if len(m.Data) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(m.Data))
	for k, v := range m.Data {
		switch v := v.(type) {
		case string:
			out[k] = v
		case json.Number:
			out[k] = v.String()
		default:
			b, err := marshalNoEscape(v)
			if err != nil {
				return nil, invalid("data."+k, "cannot encode: %v", err)
			}
			out[k] = string(b)
		}
	}
	return out, nil
}

// fcmMessage is the FCM HTTP v1 message without its token.
type fcmMessage struct {
	Notification *fcmNotification  `json:"notification,omitempty"`
	Data         map[string]string `json:"data,omitempty"`
	Android      *fcmAndroid       `json:"android,omitempty"`
}

type fcmNotification struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

type fcmAndroid struct {
	Priority     string                  `json:"priority,omitempty"`
	TTL          string                  `json:"ttl,omitempty"`
	CollapseKey  string                  `json:"collapse_key,omitempty"`
	Notification *fcmAndroidNotification `json:"notification,omitempty"`
}

type fcmAndroidNotification struct {
	ChannelID string `json:"channel_id,omitempty"`
	Sound     string `json:"sound,omitempty"`
	Tag       string `json:"tag,omitempty"`
	Image     string `json:"image,omitempty"`
}

// fcmMessage maps the message onto FCM's: the alert's title and body (a
// plain-string alert is the body; the APNs-only subtitle is left out),
// Data as strings, and the android settings.
func (m *Message) fcmMessage() (*fcmMessage, error) {
	data, err := m.FCMData()
	if err != nil {
		return nil, err
	}
	fm := &fcmMessage{Data: data}
	if a := m.Alert; a != nil {
		n := &fcmNotification{Title: a.Title, Body: a.Body}
		if a.IsText() {
			n.Body = a.Text
		}
		fm.Notification = n
	}
	if a := m.Android; a != nil {
		fa := &fcmAndroid{Priority: a.fcmPriority(), CollapseKey: a.CollapseKey}
		if a.TTL != nil {
			fa.TTL = a.TTL.FCMString()
		}
		if a.ChannelID != "" || a.Sound != "" || a.Tag != "" || a.Image != "" {
			fa.Notification = &fcmAndroidNotification{ChannelID: a.ChannelID, Sound: a.Sound, Tag: a.Tag, Image: a.Image}
		}
		if *fa != (fcmAndroid{}) {
			fm.Android = fa
		}
	}
	return fm, nil
}

// contentSize is what FCM counts against its 4096-byte limit: data keys
// and values plus the notification's text fields.
func (fm *fcmMessage) contentSize() int {
	n := 0
	for k, v := range fm.Data {
		n += len(k) + len(v)
	}
	if fm.Notification != nil {
		n += len(fm.Notification.Title) + len(fm.Notification.Body)
	}
	if fm.Android != nil && fm.Android.Notification != nil {
		an := fm.Android.Notification
		n += len(an.ChannelID) + len(an.Sound) + len(an.Tag) + len(an.Image)
	}
	return n
}

// tail is the request body after `{"message":{"token":"<token>"`: the
// rest of the message object and the closing braces. A registration
// token needs no JSON escaping (validated characters), so a request is
// the fixed head, the token and this tail, with no encoding per token.
func (fm *fcmMessage) tail() ([]byte, error) {
	b, err := marshalNoEscape(fm)
	if err != nil {
		return nil, invalid("data", "cannot encode: %v", err)
	}
	// b is {...}; drop its braces and splice after the token.
	inner := b[1 : len(b)-1]
	out := make([]byte, 0, len(inner)+3)
	if len(inner) > 0 {
		out = append(out, ',')
		out = append(out, inner...)
	}
	return append(out, "}}"...), nil
}

const fcmRequestHead = `{"message":{"token":"`

// FCMRequest returns the HTTP body of an FCM v1 send of m to one
// registration token. It assumes a validated message; a message that
// ParseMessage built reuses the tail it encoded while validating.
func (m *Message) FCMRequest(token string) ([]byte, error) {
	tail := m.fcmTail
	if tail == nil {
		fm, err := m.fcmMessage()
		if err != nil {
			return nil, err
		}
		if tail, err = fm.tail(); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	buf.Grow(len(fcmRequestHead) + len(token) + 1 + len(tail))
	buf.WriteString(fcmRequestHead)
	buf.WriteString(token)
	buf.WriteByte('"')
	buf.Write(tail)
	return buf.Bytes(), nil
}
