package fcmsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// fcmErr is one kind of FCM error answer: HTTP status, google.rpc status,
// the FcmError errorCode ("" for errors FCM sends without one) and a
// message like FCM's.
type fcmErr struct {
	http      int
	status    string
	errorCode string
	message   string
}

// key is how the error is counted in Stats.Rejected: its errorCode, or
// its status without one.
func (e fcmErr) key() string {
	if e.errorCode != "" {
		return e.errorCode
	}
	return e.status
}

var (
	errUnauthenticated = fcmErr{401, "UNAUTHENTICATED", "", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."}
	errProjectNotFound = fcmErr{404, "NOT_FOUND", "", "Requested entity was not found."}
	errUnregistered    = fcmErr{404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found."}
	errSenderMismatch  = fcmErr{403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "SenderId mismatch"}
	errQuota           = fcmErr{429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded for quota metric 'Send messages' of service 'fcm.googleapis.com'."}
	errBadToken        = invalidArgument("The registration token is not a valid FCM registration token")
)

func invalidArgument(msg string) fcmErr {
	return fcmErr{400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", msg}
}

// injectable are the errors --fail can inject, by code.
var injectable = map[string]fcmErr{
	"INTERNAL":               {500, "INTERNAL", "INTERNAL", "Internal error encountered."},
	"UNAVAILABLE":            {503, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable."},
	"QUOTA_EXCEEDED":         errQuota,
	"THIRD_PARTY_AUTH_ERROR": {401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR", "Auth error from APNS or Web Push Service"},
	"PERMISSION_DENIED":      {403, "PERMISSION_DENIED", "", "The caller does not have permission"},
	"UNAUTHENTICATED":        errUnauthenticated,
	"UNREGISTERED":           errUnregistered,
	"SENDER_ID_MISMATCH":     errSenderMismatch,
	"NOT_FOUND":              errProjectNotFound,
	"INVALID_ARGUMENT":       invalidArgument("Request contains an invalid argument."),
	"UNSPECIFIED_ERROR":      {500, "UNKNOWN", "UNSPECIFIED_ERROR", "An unknown error occurred."},
}

// KnownCode reports whether code can be injected with Config.Failures.
func KnownCode(code string) bool {
	_, ok := injectable[code]
	return ok
}

func knownCodes() string {
	codes := make([]string, 0, len(injectable))
	for c := range injectable {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	return strings.Join(codes, ", ")
}

// Limits FCM applies to a message (docs/fcm.md).
const (
	maxContent  = 4096
	maxTTLSecs  = 28 * 24 * 3600
	maxBodySize = 1 << 20
)

var (
	ttlPattern = regexp.MustCompile(`^([0-9]+)(\.[0-9]{1,9})?s$`)
)

// messageFields are the fields of FCM's Message object; others are
// refused, as FCM refuses unknown names.
var messageFields = map[string]bool{
	"name": true, "token": true, "topic": true, "condition": true, "notification": true,
	"data": true, "android": true, "apns": true, "webpush": true, "fcm_options": true,
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/sim/stats" && r.Method == http.MethodGet:
		s.serveStats(w, r.URL.Query().Get("tokens") != "0")
	case strings.HasPrefix(r.URL.Path, "/v1/"):
		s.serveSend(w, r)
	case r.Method == http.MethodPost && !strings.HasPrefix(r.URL.Path, "/sim/"):
		s.serveToken(w, r)
	default:
		http.NotFound(w, r)
	}
}

// serveSend answers /v1/projects/{project}/messages:send, applying FCM's
// checks in order; the first failing one answers.
func (s *Server) serveSend(w http.ResponseWriter, r *http.Request) {
	project, ok := strings.CutPrefix(r.URL.Path, "/v1/projects/")
	project, ok2 := strings.CutSuffix(project, "/messages:send")
	if !ok || !ok2 || r.Method != http.MethodPost {
		s.reject(w, errProjectNotFound)
		return
	}
	// 1. The access token.
	auth := r.Header.Get("Authorization")
	if len(auth) < 7 || !strings.EqualFold(auth[:7], "bearer ") || !s.issued.valid(auth[7:]) {
		s.reject(w, errUnauthenticated)
		return
	}
	// 2. The project.
	if project != s.cfg.Project {
		s.reject(w, errProjectNotFound)
		return
	}
	// 3. The body and message.token.
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodySize+1))
	if err != nil || len(body) > maxBodySize {
		s.reject(w, invalidArgument("Request payload size exceeds the limit."))
		return
	}
	var req struct {
		Message      map[string]json.RawMessage `json:"message"`
		ValidateOnly bool                       `json:"validate_only"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.reject(w, invalidArgument("Invalid JSON payload received. "+err.Error()))
		return
	}
	for name := range req.Message {
		if !messageFields[name] {
			s.reject(w, invalidArgument(fmt.Sprintf("Invalid JSON payload received. Unknown name %q at 'message': Cannot find field.", name)))
			return
		}
	}
	var token string
	if raw, ok := req.Message["token"]; !ok || json.Unmarshal(raw, &token) != nil || token == "" {
		s.reject(w, invalidArgument("Recipient of the message is not set."))
		return
	}
	// 4. Data: string values, no reserved keys.
	content := 0
	if raw, ok := req.Message["data"]; ok {
		var data map[string]json.RawMessage
		if json.Unmarshal(raw, &data) != nil {
			s.reject(w, invalidArgument("Invalid value at 'message.data': want an object of strings."))
			return
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			var v string
			if json.Unmarshal(data[k], &v) != nil {
				s.reject(w, invalidArgument(fmt.Sprintf("Invalid value at 'message.data[%s].value' (TYPE_STRING), %s", k, data[k])))
				return
			}
			if k == "from" || k == "message_type" || strings.HasPrefix(k, "google") || strings.HasPrefix(k, "gcm") {
				s.reject(w, invalidArgument("Invalid data payload key: "+k))
				return
			}
			content += len(k) + len(v)
		}
	}
	// 5. Size: data plus the notifications' text.
	var android struct {
		Priority     *string         `json:"priority"`
		TTL          *string         `json:"ttl"`
		Notification json.RawMessage `json:"notification"`
	}
	if raw, ok := req.Message["android"]; ok && json.Unmarshal(raw, &android) != nil {
		s.reject(w, invalidArgument("Invalid value at 'message.android'."))
		return
	}
	content += stringBytes(req.Message["notification"]) + stringBytes(android.Notification)
	if content > maxContent {
		s.reject(w, invalidArgument(fmt.Sprintf("Message is too big: %d bytes of data and notification, over %d.", content, maxContent)))
		return
	}
	// 6. Android ttl and priority.
	if android.TTL != nil && !validTTL(*android.TTL) {
		s.reject(w, invalidArgument(fmt.Sprintf("Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), %q", *android.TTL)))
		return
	}
	// The enum's names, in any case: the Firebase Admin SDK sends "high".
	if p := android.Priority; p != nil && !strings.EqualFold(*p, "NORMAL") && !strings.EqualFold(*p, "HIGH") {
		s.reject(w, invalidArgument(fmt.Sprintf("Invalid value at 'message.android.priority' (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), %q", *p)))
		return
	}
	// 7. The registration token's form.
	if !validRegToken(token) {
		s.reject(w, errBadToken)
		return
	}
	if req.ValidateOnly {
		s.stats.validated.Add(1)
		s.writeName(w)
		return
	}
	// 8. Token state: dead, another project's, over its rate.
	switch {
	case s.dead[token]:
		s.reject(w, errUnregistered)
		return
	case s.mismatch[token]:
		s.reject(w, errSenderMismatch)
		return
	case !s.limiter.Allow(token, time.Now()):
		s.reject(w, errQuota)
		return
	}
	// 9. Injected faults.
	if len(s.cfg.Failures) > 0 {
		x := rand.Float64()
		for _, f := range s.cfg.Failures {
			if x < f.Rate {
				s.reject(w, injectable[f.Code])
				return
			}
			x -= f.Rate
		}
	}
	// 10. Latency, then 200.
	if d := s.latency(); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	s.stats.accept(token)
	s.writeName(w)
}

var messageSeq atomic.Uint64

func (s *Server) writeName(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	name := "projects/" + s.cfg.Project + "/messages/0:" + strconv.FormatInt(time.Now().UnixMicro(), 10) +
		"%" + strconv.FormatUint(messageSeq.Add(1), 16)
	_, _ = io.WriteString(w, `{"name":"`+name+`"}`)
}

func (s *Server) reject(w http.ResponseWriter, e fcmErr) {
	s.stats.reject(e.key())
	body := map[string]any{"code": e.http, "message": e.message, "status": e.status}
	if e.errorCode != "" {
		body["details"] = []map[string]string{{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": e.errorCode}}
	}
	w.Header().Set("Content-Type", "application/json")
	if e.http == http.StatusTooManyRequests || e.http == http.StatusInternalServerError || e.http == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", s.retryAfterHeader())
	}
	w.WriteHeader(e.http)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": body})
}

// stringBytes sums the lengths of the string values of a JSON object (a
// notification), 0 for anything else.
func stringBytes(raw json.RawMessage) int {
	var obj map[string]any
	if len(raw) == 0 || json.Unmarshal(raw, &obj) != nil {
		return 0
	}
	n := 0
	for _, v := range obj {
		if s, ok := v.(string); ok {
			n += len(s)
		}
	}
	return n
}

// validTTL checks a protobuf Duration string within 0 to 28 days.
func validTTL(ttl string) bool {
	m := ttlPattern.FindStringSubmatch(ttl)
	if m == nil {
		return false
	}
	secs, err := strconv.ParseInt(m[1], 10, 64)
	return err == nil && (secs < maxTTLSecs || (secs == maxTTLSecs && strings.Trim(m[2], ".0") == ""))
}

// validRegToken checks a registration token's form: 100 to 4096 letters,
// digits, '_', ':' or '-'.
func validRegToken(tok string) bool {
	if len(tok) < 100 || len(tok) > 4096 {
		return false
	}
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}
