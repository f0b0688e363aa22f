package push_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/kpush/kpush/push"
)

const tok64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseMessageRejects(t *testing.T) {
	cases := []struct {
		name      string
		json      string
		wantField string
		wantText  string
	}{
		{"no tokens", `{"topic":"com.x","alert":"hi"}`, "tokens", "at least one"},
		{"empty token list", `{"tokens":[],"topic":"com.x","alert":"hi"}`, "tokens", "at least one"},
		{"token not hex", `{"tokens":["` + tok64 + `","zz"],"topic":"com.x","alert":"hi"}`, "tokens[1]", "not hex"},
		{"elided token", `{"tokens":["3f1c...e9"],"topic":"com.x","alert":"hi"}`, "tokens[0]", "not hex"},
		{"short token", `{"tokens":["abcd"],"topic":"com.x","alert":"hi"}`, "tokens[0]", "too short: device tokens have 64 or more"},
		{"odd token", `{"tokens":["` + tok64 + `a"],"topic":"com.x","alert":"hi"}`, "tokens[0]", "odd"},
		{"empty token", `{"tokens":[""],"topic":"com.x","alert":"hi"}`, "tokens[0]", "empty"},
		{"huge token", `{"tokens":["` + strings.Repeat("ab", 101) + `"],"topic":"com.x","alert":"hi"}`, "tokens[0]", "longer"},
		{"duplicate token", `{"tokens":["` + tok64 + `","` + strings.ToUpper(tok64) + `"],"topic":"com.x","alert":"hi"}`, "tokens[1]", "duplicate of tokens[0]"},
		{"no topic", `{"tokens":["` + tok64 + `"],"alert":"hi"}`, "topic", "required"},
		{"unknown push type", `{"tokens":["` + tok64 + `"],"topic":"com.x","push_type":"fax","alert":"hi"}`, "push_type", "unknown push type"},
		{"voip topic suffix", `{"tokens":["` + tok64 + `"],"topic":"com.x","push_type":"voip","alert":"hi"}`, "topic", ".voip"},
		{"bad priority", `{"tokens":["` + tok64 + `"],"topic":"com.x","priority":7,"alert":"hi"}`, "priority", "not 10, 5 or 1"},
		{"background priority 10", `{"tokens":["` + tok64 + `"],"topic":"com.x","push_type":"background","priority":10,"content_available":true}`, "priority", "background"},
		{"background with alert", `{"tokens":["` + tok64 + `"],"topic":"com.x","push_type":"background","alert":"hi","content_available":true}`, "alert", "background"},
		{"background without content_available", `{"tokens":["` + tok64 + `"],"topic":"com.x","push_type":"background"}`, "content_available", "content_available"},
		{"negative expiration", `{"tokens":["` + tok64 + `"],"topic":"com.x","expiration":-1,"alert":"hi"}`, "expiration", "negative"},
		{"long collapse id", `{"tokens":["` + tok64 + `"],"topic":"com.x","collapse_id":"` + strings.Repeat("c", 65) + `","alert":"hi"}`, "collapse_id", "64"},
		{"negative badge", `{"tokens":["` + tok64 + `"],"topic":"com.x","badge":-1}`, "badge", "negative"},
		{"aps inside data", `{"tokens":["` + tok64 + `"],"topic":"com.x","alert":"hi","data":{"aps":{}}}`, "data.aps", "reserved"},
		{"payload too large", `{"tokens":["` + tok64 + `"],"topic":"com.x","alert":"` + strings.Repeat("x", 4090) + `"}`, "alert", "4096"},
		{"raw payload not an object", `{"tokens":["` + tok64 + `"],"topic":"com.x","payload":[1]}`, "payload", "JSON object"},
		{"raw payload without aps", `{"tokens":["` + tok64 + `"],"topic":"com.x","payload":{"k":1}}`, "payload", "aps"},
		{"raw payload too large", `{"tokens":["` + tok64 + `"],"topic":"com.x","payload":{"aps":{},"k":"` + strings.Repeat("x", 4100) + `"}}`, "payload", "4096"},
		{"unknown field", `{"tokens":["` + tok64 + `"],"topic":"com.x","alrt":"hi"}`, "alrt", "unknown field"},
		{"wrong type", `{"tokens":"` + tok64 + `","topic":"com.x"}`, "tokens", "want an array of strings, got a JSON string"},
		{"wrong type in alert", `{"tokens":["` + tok64 + `"],"topic":"com.x","alert":{"title":3}}`, "alert.title", "want a string, got a JSON number"},
		{"wrong type of flag", `{"tokens":["` + tok64 + `"],"topic":"com.x","mutable_content":1}`, "mutable_content", "want true or false"},
		{"a line of a pretty-printed message", `"tokens": ["` + tok64 + `"],`, "(message)", "got a JSON string; a message is one object"},
		{"the first line of a pretty-printed message", `{`, "(message)", "ends early"},
		{"alert of wrong type", `{"tokens":["` + tok64 + `"],"topic":"com.x","alert":3}`, "alert", "string or an object"},
		{"alert with unknown key", `{"tokens":["` + tok64 + `"],"topic":"com.x","alert":{"titel":"x"}}`, "alert", "titel"},
		{"empty alert text", `{"tokens":["` + tok64 + `"],"topic":"com.x","alert":""}`, "alert", "empty"},
		{"trailing data", `{"tokens":["` + tok64 + `"],"topic":"com.x","alert":"hi"} {}`, "(message)", "after the JSON object"},
		{"not JSON", `tokens: [1]`, "(message)", "not a JSON message"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := push.ParseMessage([]byte(tc.json))
			if err == nil {
				t.Fatalf("ParseMessage accepted %+v", m)
			}
			if !errors.Is(err, push.ErrInvalidMessage) {
				t.Errorf("error %v does not wrap ErrInvalidMessage", err)
			}
			var ve *push.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T %v is not a *ValidationError", err, err)
			}
			if strings.Contains(err.Error(), "Go ") || strings.Contains(err.Error(), "push.") {
				t.Errorf("error %q names Go types; users write JSON", err)
			}
			if ve.Field != tc.wantField || !strings.Contains(ve.Reason, tc.wantText) {
				t.Errorf("error = field %q reason %q, want field %q and reason containing %q", ve.Field, ve.Reason, tc.wantField, tc.wantText)
			}
		})
	}
}

func TestParseMessageAccepts(t *testing.T) {
	cases := []struct {
		name        string
		json        string
		wantPayload string
	}{
		{"alert text", `{"tokens":["` + tok64 + `"],"topic":"com.x","alert":"Hi <you> & me"}`,
			`{"aps":{"alert":"Hi <you> & me"}}`},
		{"a longer token (Apple may lengthen them)", `{"tokens":["` + tok64 + tok64 + `"],"topic":"com.x","alert":"hi"}`,
			`{"aps":{"alert":"hi"}}`},
		{"alert dict and fields", `{"id":"m1","tokens":["` + tok64 + `"],"topic":"com.x","push_type":"alert","priority":5,"expiration":1900000000,"collapse_id":"c","alert":{"title":"T","subtitle":"S","body":"B"},"badge":0,"sound":"default","category":"cat","thread_id":"th","mutable_content":true,"data":{"n":12345678901234567890,"s":"v"}}`,
			`{"aps":{"alert":{"title":"T","subtitle":"S","body":"B"},"badge":0,"sound":"default","thread-id":"th","category":"cat","mutable-content":1},"n":12345678901234567890,"s":"v"}`},
		{"background", `{"tokens":["` + tok64 + `"],"topic":"com.x","push_type":"background","priority":5,"content_available":true}`,
			`{"aps":{"content-available":1}}`},
		{"voip up to 5120 bytes", `{"tokens":["` + tok64 + `"],"topic":"com.x.voip","push_type":"voip","data":{"k":"` + strings.Repeat("x", 5000) + `"}}`,
			`{"aps":{},"k":"` + strings.Repeat("x", 5000) + `"}`},
		{"raw payload overrides fields", `{"tokens":["` + tok64 + `"],"topic":"com.x","alert":"ignored","payload":{"aps":{"alert":"raw", "sound":{"critical":1,"name":"a","volume":0.5}},"k":[1, 2]}}`,
			`{"aps":{"alert":"raw","sound":{"critical":1,"name":"a","volume":0.5}},"k":[1,2]}`},
		{"attempt and enqueued_at", `{"tokens":["` + tok64 + `"],"topic":"com.x","alert":"a","attempt":3,"enqueued_at":1700000000000}`,
			`{"aps":{"alert":"a"}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := push.ParseMessage([]byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.APNsPayload()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.wantPayload {
				t.Errorf("APNsPayload =\n%s\nwant\n%s", got, tc.wantPayload)
			}
			// Encode then parse again: the same message.
			enc, err := m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			again, err := push.ParseMessage(enc)
			if err != nil {
				t.Fatalf("re-parse of %s: %v", enc, err)
			}
			enc2, _ := again.Encode()
			if string(enc) != string(enc2) {
				t.Errorf("Encode is not stable:\n%s\n%s", enc, enc2)
			}
		})
	}
}

func TestAlertForms(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want push.Alert
	}{
		{`"hello"`, push.Alert{Text: "hello"}},
		{`{"title":"t","body":"b"}`, push.Alert{Title: "t", Body: "b"}},
	} {
		var a push.Alert
		if err := json.Unmarshal([]byte(tc.in), &a); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if a != tc.want {
			t.Errorf("%s decoded to %+v, want %+v", tc.in, a, tc.want)
		}
		out, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != tc.in {
			t.Errorf("%+v encoded to %s, want %s", a, out, tc.in)
		}
	}
}

func TestEncodeFieldNames(t *testing.T) {
	badge := 2
	m := &push.Message{ID: "x", Tokens: []string{tok64}, Topic: "com.x", Alert: &push.Alert{Text: "a"}, Badge: &badge, Attempt: 1, EnqueuedAt: 5}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"x","tokens":["` + tok64 + `"],"topic":"com.x","alert":"a","badge":2,"attempt":1,"enqueued_at":5}`
	if string(b) != want {
		t.Errorf("Encode = %s\nwant %s", b, want)
	}
}

func FuzzParseMessage(f *testing.F) {
	f.Add([]byte(`{"tokens":["` + tok64 + `"],"topic":"com.x","alert":"hi"}`))
	f.Add([]byte(`{"tokens":["` + tok64 + `"],"topic":"com.x","alert":{"title":"t"},"data":{"a":[1,{"b":null}]}}`))
	f.Add([]byte(`{"tokens":["` + tok64 + `"],"topic":"com.x","payload":{"aps":{}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := push.ParseMessage(b)
		if err != nil {
			if !errors.Is(err, push.ErrInvalidMessage) {
				t.Fatalf("error %v does not wrap ErrInvalidMessage", err)
			}
			return
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("valid message does not encode: %v", err)
		}
		if _, err := push.ParseMessage(enc); err != nil {
			t.Fatalf("encoded message %s does not parse: %v", enc, err)
		}
	})
}
