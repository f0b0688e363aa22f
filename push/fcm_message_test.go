package push_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kpush/kpush/push"
)

var fcm152 = fcmToken(7)

func TestParseMessageRejectsFCM(t *testing.T) {
	one := `"fcm_tokens":["` + fcm152 + `"]`
	cases := []struct {
		name, json, wantField, wantText string
	}{
		{"no tokens of either kind", `{"fcm_tokens":[],"alert":"hi"}`, "tokens", "fcm_tokens for FCM"},
		{"short token", `{"fcm_tokens":["abc"],"alert":"hi"}`, "fcm_tokens[0]", "at least 100"},
		{"bad character", `{"fcm_tokens":["` + fcm152 + `","` + strings.Repeat("a", 110) + `/"],"alert":"hi"}`, "fcm_tokens[1]", "'/'"},
		{"duplicate token", `{"fcm_tokens":["` + fcm152 + `","` + fcm152 + `"],"alert":"hi"}`, "fcm_tokens[1]", "duplicate of fcm_tokens[0]"},
		{"reserved key from", `{` + one + `,"data":{"from":"x"}}`, "data.from", "reserved"},
		{"reserved prefix google", `{` + one + `,"data":{"google.sent_time":"1"}}`, "data.google.sent_time", "reserved"},
		{"reserved prefix gcm", `{` + one + `,"data":{"gcm_x":"1"}}`, "data.gcm_x", "reserved"},
		{"data too big", `{` + one + `,"data":{"k":"` + strings.Repeat("x", 4096) + `"}}`, "data", "4096"},
		{"alert too big", `{` + one + `,"alert":{"title":"` + strings.Repeat("x", 2048) + `","body":"` + strings.Repeat("y", 2049) + `"}}`, "alert", "4096"},
		{"negative ttl", `{` + one + `,"alert":"hi","android":{"ttl":-1}}`, "android.ttl", "0 to"},
		{"ttl over 28 days", `{` + one + `,"alert":"hi","android":{"ttl":"2419201s"}}`, "android.ttl", "28 days"},
		{"ttl without unit", `{` + one + `,"alert":"hi","android":{"ttl":"60"}}`, "android.ttl", "seconds"},
		{"bad priority", `{` + one + `,"alert":"hi","android":{"priority":"urgent"}}`, "android.priority", "high or normal"},
		{"unknown android field", `{` + one + `,"alert":"hi","android":{"colour":"red"}}`, "colour", "unknown field"},
		{"mixed: APNs rules still apply", `{"tokens":["` + tok64 + `"],` + one + `,"alert":"hi"}`, "topic", "required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := push.ParseMessage([]byte(tc.json))
			if err == nil {
				t.Fatalf("ParseMessage accepted %+v", m)
			}
			var ve *push.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, push.ErrInvalidMessage) {
				t.Fatalf("error %v is not a ValidationError wrapping ErrInvalidMessage", err)
			}
			if ve.Field != tc.wantField && !strings.Contains(err.Error(), tc.wantField) {
				t.Errorf("field = %q, want %q (err %v)", ve.Field, tc.wantField, err)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not mention %q", err, tc.wantText)
			}
		})
	}
}

func TestParseMessageAcceptsFCM(t *testing.T) {
	for name, js := range map[string]string{
		// No topic: it is APNs's.
		"fcm only":              `{"fcm_tokens":["` + fcm152 + `"],"alert":"hi"}`,
		"data-only":             `{"fcm_tokens":["` + fcm152 + `"],"data":{"sync":"inbox"}}`,
		"mixed":                 `{"tokens":["` + tok64 + `"],"topic":"com.x","fcm_tokens":["` + fcm152 + `"],"alert":"hi"}`,
		"ttl of 28 days":        `{"fcm_tokens":["` + fcm152 + `"],"alert":"hi","android":{"ttl":"2419200s","priority":"NORMAL"}}`,
		"reserved key for APNs": `{"tokens":["` + tok64 + `"],"topic":"com.x","alert":"hi","data":{"from":"x"}}`,
	} {
		if _, err := push.ParseMessage([]byte(js)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestFCMRequestBody pins the body sent to FCM: the alert as the
// notification, data as strings (non-strings as their JSON text, as in
// the APNs payload), the android settings in FCM's form.
func TestFCMRequestBody(t *testing.T) {
	m, err := push.ParseMessage([]byte(`{"tokens":["` + tok64 + `"],"topic":"com.x","fcm_tokens":["` + fcm152 + `"],
		"alert":{"title":"Shipped","subtitle":"iOS only","body":"On its way"},
		"data":{"order":42,"price":1.50,"express":true,"tags":["a","b"],"none":null,"link":"app://o/42"},
		"android":{"priority":"high","ttl":3600,"collapse_key":"orders","channel_id":"orders","sound":"default","tag":"t","image":"https://x/i.png"}}`))
	if err != nil {
		t.Fatal(err)
	}
	body, err := m.FCMRequest(fcm152)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"message":{"token":"` + fcm152 + `","notification":{"title":"Shipped","body":"On its way"},` +
		`"data":{"express":"true","link":"app://o/42","none":"null","order":"42","price":"1.50","tags":"[\"a\",\"b\"]"},` +
		`"android":{"priority":"HIGH","ttl":"3600s","collapse_key":"orders","notification":{"channel_id":"orders","sound":"default","tag":"t","image":"https://x/i.png"}}}}`
	if string(body) != want {
		t.Fatalf("FCM body\n got %s\nwant %s", body, want)
	}
	// The same conversion of each value as in the APNs payload.
	apns, _ := m.APNsPayload()
	for _, frag := range []string{`"order":42`, `"price":1.50`, `"express":true`, `"tags":["a","b"]`, `"none":null`} {
		if !strings.Contains(string(apns), frag) {
			t.Errorf("APNs payload %s lacks %s", apns, frag)
		}
	}
	// A message built in Go (not parsed) gives the same body.
	built := *m
	rebuilt, err := push.ParseMessage(mustEncode(t, &built))
	if err != nil {
		t.Fatal(err)
	}
	if b2, _ := rebuilt.FCMRequest(fcm152); string(b2) != want {
		t.Errorf("after an encode/parse round trip\n got %s\nwant %s", b2, want)
	}
	goMsg := &push.Message{FCMTokens: []string{fcm152}, Alert: &push.Alert{Text: "hi"}, Data: map[string]any{"n": 7}}
	if b, _ := goMsg.FCMRequest(fcm152); string(b) != `{"message":{"token":"`+fcm152+`","notification":{"body":"hi"},"data":{"n":"7"}}}` {
		t.Errorf("unparsed message body = %s", b)
	}
}

func TestTTLForms(t *testing.T) {
	for in, want := range map[string]time.Duration{
		`3600`: time.Hour, `"3600s"`: time.Hour, `"3.5s"`: 3500 * time.Millisecond, `0.25`: 250 * time.Millisecond, `"0s"`: 0,
		`"0.000000001s"`: time.Nanosecond,
	} {
		var ttl push.TTL
		if err := json.Unmarshal([]byte(in), &ttl); err != nil || ttl.Duration != want {
			t.Errorf("TTL %s = %v, %v; want %v", in, ttl.Duration, err, want)
		}
	}
	for d, want := range map[time.Duration]string{time.Hour: "3600s", 3500 * time.Millisecond: "3.5s", time.Nanosecond: "0.000000001s", 0: "0s"} {
		if got := (push.TTL{Duration: d}).FCMString(); got != want {
			t.Errorf("TTL(%v) = %q, want %q", d, got, want)
		}
	}
}

// An APNs-only message encodes as it always did: no FCM fields appear.
func TestAPNsMessageEncodingUnchanged(t *testing.T) {
	in := `{"id":"m1","tokens":["` + tok64 + `"],"topic":"com.x","alert":"hi","data":{"n":1}}`
	m, err := push.ParseMessage([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(mustEncode(t, m)); got != in {
		t.Errorf("Encode = %s, want %s", got, in)
	}
}

func mustEncode(t testing.TB, m *push.Message) []byte {
	t.Helper()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
