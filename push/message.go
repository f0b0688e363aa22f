package push

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// Push types Apple defines for the apns-push-type header (docs/apns.md §1).
const (
	PushTypeAlert        = "alert"
	PushTypeBackground   = "background"
	PushTypeLocation     = "location"
	PushTypeVOIP         = "voip"
	PushTypeComplication = "complication"
	PushTypeFileProvider = "fileprovider"
	PushTypeMDM          = "mdm"
	PushTypeLiveActivity = "liveactivity"
	PushTypePushToTalk   = "pushtotalk"
	PushTypeWidgets      = "widgets"
	PushTypeControls     = "controls"
)

// Payload size limits Apple enforces (413 PayloadTooLarge above them).
const (
	MaxPayloadSize     = 4096
	MaxVOIPPayloadSize = 5120
)

// MaxCollapseIDLen is the longest apns-collapse-id Apple accepts, in bytes.
const MaxCollapseIDLen = 64

// MinTokenLen and MaxTokenLen bound a device token's hex length. Apple's
// tokens are 64 hex digits today and Apple warns they may grow, so longer
// even-length tokens are accepted; shorter ones are never Apple's (a typo, a
// truncated paste) and would only come back as BadDeviceToken. 200 leaves
// room to grow while still catching garbage pasted into the field.
const (
	MinTokenLen = 64
	MaxTokenLen = 200
)

// topicSuffix is the apns-topic suffix each push type requires (docs/apns.md §5).
var topicSuffix = map[string]string{
	PushTypeAlert:        "",
	PushTypeBackground:   "",
	PushTypeMDM:          "",
	PushTypeVOIP:         ".voip",
	PushTypeLiveActivity: ".push-type.liveactivity",
	PushTypeLocation:     ".location-query",
	PushTypeComplication: ".complication",
	PushTypeFileProvider: ".pushkit.fileprovider",
	PushTypePushToTalk:   ".voip-ptt",
	PushTypeWidgets:      ".push-type.widgets",
	PushTypeControls:     ".push-type.controls",
}

// ErrInvalidMessage is wrapped by every *ValidationError, so callers can
// test errors.Is(err, push.ErrInvalidMessage) without caring which field.
var ErrInvalidMessage = errors.New("invalid push message")

// ValidationError says which field of a Message is wrong and why. Field uses
// the JSON names, with an index for list elements: "tokens[3]".
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid push message: %s: %s", e.Field, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidMessage) true.
func (e *ValidationError) Unwrap() error { return ErrInvalidMessage }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Message is one push notification to one or more device tokens: the JSON
// body of a queue item. docs/message.md documents every field.
type Message struct {
	// ID is the application's identifier for the message. When set, each
	// (ID, token) pair gets a stable apns-id (a name-based UUID), so a
	// retried push carries the same apns-id as the first attempt.
	ID string `json:"id,omitempty"`
	// Tokens are APNs device tokens (hex); the message is sent to each.
	Tokens []string `json:"tokens,omitempty"`
	// FCMTokens are FCM registration tokens (Android); the message is
	// sent to each through FCM (docs/fcm.md).
	FCMTokens []string `json:"fcm_tokens,omitempty"`
	// Topic is the apns-topic: the bundle ID plus the push type's suffix.
	// Required when Tokens is not empty.
	Topic string `json:"topic,omitempty"`
	// PushType is the apns-push-type; empty means "alert".
	PushType string `json:"push_type,omitempty"`
	// Priority is 10, 5 or 1; 0 means Apple's default (10, 5 for background).
	Priority int `json:"priority,omitempty"`
	// Expiration is the apns-expiration in UNIX seconds; 0 means not set.
	Expiration int64 `json:"expiration,omitempty"`
	// CollapseID is the apns-collapse-id, at most 64 bytes.
	CollapseID string `json:"collapse_id,omitempty"`

	Alert            *Alert `json:"alert,omitempty"`
	Badge            *int   `json:"badge,omitempty"`
	Sound            string `json:"sound,omitempty"`
	Category         string `json:"category,omitempty"`
	ThreadID         string `json:"thread_id,omitempty"`
	ContentAvailable bool   `json:"content_available,omitempty"`
	MutableContent   bool   `json:"mutable_content,omitempty"`
	// Data holds custom keys placed next to "aps" in the APNs payload
	// and, as strings (FCMData), in the FCM message's data.
	Data map[string]any `json:"data,omitempty"`
	// Android holds the FCM-only settings (docs/message.md).
	Android *Android `json:"android,omitempty"`
	// Payload, when set, is sent verbatim as the APNs payload and the
	// fields alert, badge, sound, category, thread_id, content_available,
	// mutable_content and data are ignored.
	Payload json.RawMessage `json:"payload,omitempty"`

	// Attempt counts how many times the worker has re-queued the message
	// for a retry; 0 on first delivery.
	Attempt int `json:"attempt,omitempty"`
	// EnqueuedAt is when the producer first enqueued the message, in UNIX
	// milliseconds, for enqueue-to-delivery latency.
	EnqueuedAt int64 `json:"enqueued_at,omitempty"`

	// body caches the APNs payload ParseMessage built while validating,
	// so a message sent to many tokens is encoded once, not once per token
	// (that was about 12% of a worker's CPU). Only ParseMessage sets it:
	// it owns the new message, so no caller can be reading it meanwhile.
	body []byte
	// fcmTail caches the FCM request body after the token (fcm.go), for
	// the same reason.
	fcmTail []byte
}

// Alert is the aps.alert value: either a plain string (Text, shown as the
// body) or a dictionary with title, subtitle and body. It unmarshals from
// both JSON forms and marshals back to the form it came from.
type Alert struct {
	Text     string `json:"-"`
	Title    string `json:"title,omitempty"`
	Subtitle string `json:"subtitle,omitempty"`
	Body     string `json:"body,omitempty"`
}

// alertDict is Alert's dictionary form without its methods, so decoding
// it does not recurse into UnmarshalJSON.
type alertDict struct {
	Title    string `json:"title,omitempty"`
	Subtitle string `json:"subtitle,omitempty"`
	Body     string `json:"body,omitempty"`
}

// IsText reports whether the alert is the plain-string form.
func (a *Alert) IsText() bool {
	return a.Title == "" && a.Subtitle == "" && a.Body == ""
}

// MarshalJSON writes the string form when only Text is set.
func (a Alert) MarshalJSON() ([]byte, error) {
	if a.IsText() {
		return marshalNoEscape(a.Text)
	}
	return marshalNoEscape(alertDict{Title: a.Title, Subtitle: a.Subtitle, Body: a.Body})
}

// UnmarshalJSON accepts a JSON string or an object with title, subtitle and
// body (other keys are rejected, they are most likely typos).
func (a *Alert) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		*a = Alert{}
		return json.Unmarshal(b, &a.Text)
	}
	if len(b) == 0 || b[0] != '{' {
		return errors.New("alert must be a string or an object with title, subtitle and body")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var d alertDict
	if err := dec.Decode(&d); err != nil {
		return fmt.Errorf("alert: %w", err)
	}
	*a = Alert{Title: d.Title, Subtitle: d.Subtitle, Body: d.Body}
	return nil
}

// ParseMessage decodes one JSON message and validates it. Unknown fields
// are rejected (a misspelt "token" would otherwise silently send nothing),
// as is anything after the object. Numbers inside data keep their exact
// text. The error wraps ErrInvalidMessage; a *ValidationError names the
// field.
func ParseMessage(b []byte) (*Message, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var m Message
	if err := dec.Decode(&m); err != nil {
		return nil, decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("(message)", "unexpected data after the JSON object")
	}
	body, fcmTail, err := m.validate()
	if err != nil {
		return nil, err
	}
	m.body, m.fcmTail = body, fcmTail
	return &m, nil
}

// decodeError turns a json decoding error into a *ValidationError naming the
// field when the decoder knows it. Reasons speak of JSON types (a string, an
// array), never of Go's.
func decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		if typeErr.Struct == "alertDict" {
			field = "alert." + field
		}
		if field == "" {
			return invalid("(message)", "not a JSON message object: got a JSON %s; a message is one object, {\"tokens\": [...], ...}", typeErr.Value)
		}
		return invalid(field, "want %s, got a JSON %s", jsonTypeName(typeErr.Type), typeErr.Value)
	}
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &syntaxErr):
		return invalid("(message)", "not a JSON message object: %s (at byte %d)", syntaxErr, syntaxErr.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return invalid("(message)", "not a whole JSON message object: it ends early")
	}
	msg := err.Error()
	if field, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return invalid(strings.Trim(field, `"`), "unknown field (see docs/message.md)")
	}
	if i := strings.Index(msg, "android.ttl"); i >= 0 {
		return invalid("android.ttl", "%s", strings.TrimPrefix(msg[i:], "android.ttl "))
	}
	if strings.Contains(msg, "alert") {
		return invalid("alert", "%s", strings.TrimPrefix(msg, "alert: "))
	}
	return invalid("(message)", "not a JSON message object: %s", msg)
}

// jsonTypeName names the JSON form a Go type decodes from.
func jsonTypeName(t reflect.Type) string {
	if t == nil {
		return "another JSON type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(jsonTypeName(t.Elem()), "a "), "an ") + "s"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonTypeName(t.Elem())
	}
	return "another JSON type"
}

// EffectivePushType is the push type sent to APNs: PushType or "alert".
func (m *Message) EffectivePushType() string {
	if m.PushType == "" {
		return PushTypeAlert
	}
	return m.PushType
}

// MaxPayload is Apple's size limit for the message's push type.
func (m *Message) MaxPayload() int {
	if m.EffectivePushType() == PushTypeVOIP {
		return MaxVOIPPayloadSize
	}
	return MaxPayloadSize
}

// Validate checks everything that would make the message undeliverable,
// before anything is sent. The error is a *ValidationError naming the first
// bad field.
func (m *Message) Validate() error {
	_, _, err := m.validate()
	return err
}

// validate checks the message and returns its APNs payload (nil without
// APNs tokens) and the tail of its FCM request body (nil without FCM
// tokens). Each platform's rules apply only when the message has tokens
// of that platform, so an APNs-only message is checked as it always was.
func (m *Message) validate() (apnsBody, fcmTail []byte, err error) {
	if len(m.Tokens) == 0 && len(m.FCMTokens) == 0 {
		return nil, nil, invalid("tokens", "at least one device token is required (tokens for APNs, fcm_tokens for FCM)")
	}
	if m.Attempt < 0 {
		return nil, nil, invalid("attempt", "must not be negative")
	}
	if len(m.Tokens) > 0 {
		if apnsBody, err = m.validateAPNs(); err != nil {
			return nil, nil, err
		}
	}
	if m.Android != nil {
		if err := m.Android.validate(); err != nil {
			return nil, nil, err
		}
	}
	if len(m.FCMTokens) > 0 {
		if fcmTail, err = m.validateFCM(); err != nil {
			return nil, nil, err
		}
	}
	return apnsBody, fcmTail, nil
}

// validateAPNs checks the APNs side and returns the APNs payload.
func (m *Message) validateAPNs() ([]byte, error) {
	seen := make(map[string]int, len(m.Tokens))
	for i, tok := range m.Tokens {
		if err := ValidateToken(tok); err != nil {
			return nil, invalid(fmt.Sprintf("tokens[%d]", i), "%v", err)
		}
		key := strings.ToLower(tok)
		if j, dup := seen[key]; dup {
			return nil, invalid(fmt.Sprintf("tokens[%d]", i), "duplicate of tokens[%d] (it would be delivered twice)", j)
		}
		seen[key] = i
	}
	pushType := m.EffectivePushType()
	suffix, known := topicSuffix[pushType]
	if !known {
		return nil, invalid("push_type", "unknown push type %q (want one of alert, background, voip, liveactivity, location, complication, fileprovider, pushtotalk, widgets, controls, mdm)", m.PushType)
	}
	if m.Topic == "" {
		return nil, invalid("topic", "required (the app's bundle ID)")
	}
	if strings.ContainsAny(m.Topic, " \t\r\n") {
		return nil, invalid("topic", "must not contain white space")
	}
	if suffix != "" && !strings.HasSuffix(m.Topic, suffix) {
		return nil, invalid("topic", "push type %s needs a topic ending in %q", pushType, suffix)
	}
	switch m.Priority {
	case 0, 1, 5:
	case 10:
		if pushType == PushTypeBackground {
			return nil, invalid("priority", "background pushes must use priority 5 (or 1), not 10")
		}
	default:
		return nil, invalid("priority", "%d is not 10, 5 or 1", m.Priority)
	}
	if m.Expiration < 0 {
		return nil, invalid("expiration", "must be UNIX seconds, not negative")
	}
	if len(m.CollapseID) > MaxCollapseIDLen {
		return nil, invalid("collapse_id", "%d bytes, Apple allows at most %d", len(m.CollapseID), MaxCollapseIDLen)
	}
	if len(m.Payload) > 0 {
		if err := validateRawPayload(m.Payload); err != nil {
			return nil, err
		}
	} else {
		if err := m.validateFields(pushType); err != nil {
			return nil, err
		}
	}
	body, err := m.APNsPayload()
	if err != nil {
		return nil, invalid("data", "cannot encode: %v", err)
	}
	if limit := m.MaxPayload(); len(body) > limit {
		field := "alert"
		if len(m.Payload) > 0 {
			field = "payload"
		}
		return nil, invalid(field, "the APNs payload is %d bytes, over Apple's %d-byte limit for %s pushes", len(body), limit, pushType)
	}
	return body, nil
}

func (m *Message) validateFields(pushType string) error {
	if m.Badge != nil && *m.Badge < 0 {
		return invalid("badge", "must not be negative (0 clears the badge)")
	}
	if m.Alert != nil && m.Alert.IsText() && m.Alert.Text == "" {
		return invalid("alert", "empty")
	}
	if pushType == PushTypeBackground {
		switch {
		case m.Alert != nil:
			return invalid("alert", "background pushes cannot carry an alert")
		case m.Badge != nil:
			return invalid("badge", "background pushes cannot carry a badge")
		case m.Sound != "":
			return invalid("sound", "background pushes cannot carry a sound")
		case !m.ContentAvailable:
			return invalid("content_available", "background pushes need content_available: true")
		}
	}
	if _, ok := m.Data["aps"]; ok {
		return invalid("data.aps", "reserved for Apple's dictionary; use the message fields or payload")
	}
	return nil
}

func validateRawPayload(raw json.RawMessage) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return invalid("payload", "must be a JSON object")
	}
	aps, ok := obj["aps"]
	if !ok {
		return invalid("payload", `needs an "aps" dictionary`)
	}
	var apsObj map[string]json.RawMessage
	if err := json.Unmarshal(aps, &apsObj); err != nil {
		return invalid("payload.aps", "must be a JSON object")
	}
	return nil
}

// ValidateToken checks a device token's form: hex digits only, an even
// number of them, from MinTokenLen (Apple's 64 today) to MaxTokenLen.
func ValidateToken(tok string) error {
	if tok == "" {
		return errors.New("empty device token")
	}
	for i := 0; i < len(tok); i++ {
		if !isHexDigit(tok[i]) {
			return errors.New("not hex")
		}
	}
	switch {
	case len(tok) < MinTokenLen:
		return fmt.Errorf("%d hex digits, too short: device tokens have %d or more (Apple's are %d)", len(tok), MinTokenLen, MinTokenLen)
	case len(tok) > MaxTokenLen:
		return fmt.Errorf("%d hex digits, longer than %d", len(tok), MaxTokenLen)
	case len(tok)%2 != 0:
		return fmt.Errorf("odd number of hex digits (%d)", len(tok))
	}
	return nil
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// Encode returns the compact JSON of the message, for a queue item.
func (m *Message) Encode() ([]byte, error) {
	return marshalNoEscape(m)
}

// aps is Apple's dictionary, in a fixed key order.
type aps struct {
	Alert            *Alert `json:"alert,omitempty"`
	Badge            *int   `json:"badge,omitempty"`
	Sound            string `json:"sound,omitempty"`
	ThreadID         string `json:"thread-id,omitempty"`
	Category         string `json:"category,omitempty"`
	ContentAvailable int    `json:"content-available,omitempty"`
	MutableContent   int    `json:"mutable-content,omitempty"`
}

// APNsPayload returns the HTTP body sent to APNs: Payload compacted when
// set, otherwise {"aps": {...}} built from the fields plus the custom keys
// from Data. HTML characters are not escaped, so the size counted here is
// the size Apple counts.
func (m *Message) APNsPayload() ([]byte, error) {
	if m.body != nil {
		return m.body, nil
	}
	if len(m.Payload) > 0 {
		var buf bytes.Buffer
		if err := json.Compact(&buf, m.Payload); err != nil {
			return nil, fmt.Errorf("payload: %w", err)
		}
		return buf.Bytes(), nil
	}
	a := aps{Alert: m.Alert, Badge: m.Badge, Sound: m.Sound, ThreadID: m.ThreadID, Category: m.Category}
	if m.ContentAvailable {
		a.ContentAvailable = 1
	}
	if m.MutableContent {
		a.MutableContent = 1
	}
	if len(m.Data) == 0 {
		// The common case: a struct encodes without the map's key
		// sorting and interface boxing, to the same bytes.
		return marshalNoEscape(struct {
			Aps aps `json:"aps"`
		}{a})
	}
	body := make(map[string]any, len(m.Data)+1)
	for k, v := range m.Data {
		body[k] = v
	}
	body["aps"] = a
	return marshalNoEscape(body)
}

// marshalNoEscape is json.Marshal without HTML escaping (which would cost
// six bytes per '<' of Apple's size budget) and without a trailing newline.
func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
