package apnssim

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Apple's reasons the simulator can answer, with their HTTP status
// (docs/apns.md §3).
const (
	reasonBadCertificate = "BadCertificate"
)

var reasonStatus = map[string]int{
	"BadCollapseId":               400,
	"BadDeviceToken":              400,
	"BadExpirationDate":           400,
	"BadMessageId":                400,
	"BadPriority":                 400,
	"BadTopic":                    400,
	"DeviceTokenNotForTopic":      400,
	"DuplicateHeaders":            400,
	"IdleTimeout":                 400,
	"InvalidPushType":             400,
	"MissingDeviceToken":          400,
	"MissingTopic":                400,
	"PayloadEmpty":                400,
	"TopicDisallowed":             400,
	"BadCertificate":              403,
	"BadCertificateEnvironment":   403,
	"ExpiredProviderToken":        403,
	"Forbidden":                   403,
	"InvalidProviderToken":        403,
	"MissingProviderToken":        403,
	"UnrelatedKeyIdInToken":       403,
	"BadEnvironmentKeyIdInToken":  403,
	"BadPath":                     404,
	"MethodNotAllowed":            405,
	"ExpiredToken":                410,
	"Unregistered":                410,
	"PayloadTooLarge":             413,
	"TooManyProviderTokenUpdates": 429,
	"TooManyRequests":             429,
	"InternalServerError":         500,
	"ServiceUnavailable":          503,
	"Shutdown":                    503,
}

// KnownReason reports whether the simulator can inject reason with
// --fail.
func KnownReason(reason string) bool {
	_, ok := reasonStatus[reason]
	return ok
}

// pushTypeSuffix is the topic suffix each push type requires.
var pushTypeSuffix = map[string]string{
	"alert": "", "background": "", "mdm": "",
	"voip":         ".voip",
	"liveactivity": ".push-type.liveactivity",
	"location":     ".location-query",
	"complication": ".complication",
	"fileprovider": ".pushkit.fileprovider",
	"pushtotalk":   ".voip-ptt",
	"widgets":      ".push-type.widgets",
	"controls":     ".push-type.controls",
}

var apnsIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

const (
	maxTokenAge       = time.Hour
	minTokenUpdateGap = 20 * time.Minute
	maxPayload        = 4096
	maxVOIPPayload    = 5120
	maxCollapseID     = 64
)

// handle answers one stream, applying docs/apns.md §7's checks in order; the
// first failing check answers.
func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	cs, _ := r.Context().Value(connStateKey{}).(*connState)
	if r.Method == http.MethodGet && r.URL.Path == "/sim/stats" {
		s.serveStats(w, r.URL.Query().Get("tokens") != "0")
		return
	}
	if r.ProtoMajor != 2 {
		// Apple speaks only HTTP/2; HTTP/1.1 is accepted for the stats.
		http.Error(w, "APNs requires HTTP/2 (ALPN h2); HTTP/1.1 serves only GET /sim/stats", http.StatusHTTPVersionNotSupported)
		return
	}
	beforeToken := !cs.open.Load()
	if beforeToken {
		// One stream at a time until a valid provider token arrives.
		select {
		case cs.gate <- struct{}{}:
			defer func() { <-cs.gate }()
		case <-cs.opened:
		case <-r.Context().Done():
			return
		}
	}
	n := cs.inflight.Add(1)
	defer cs.inflight.Add(-1)
	s.stats.maxStreams.raise(n)
	if beforeToken {
		s.stats.maxStreamsBeforeToken.raise(n)
	}
	reason, timestamp := s.check(cs, r)
	if reason != "" {
		s.log.Debug("rejected push", "reason", reason, "path", r.URL.Path)
		s.stats.reject(reason)
		s.writeError(w, reason, timestamp)
		return
	}
	if d := s.latency(); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	apnsID := r.Header.Get("apns-id")
	if apnsID == "" {
		apnsID = uuid.NewString()
	}
	w.Header().Set("apns-id", apnsID)
	if s.cfg.Development {
		w.Header().Set("apns-unique-id", uuid.NewString())
	}
	s.stats.accept(deviceToken(r))
	w.WriteHeader(http.StatusOK)
}

func deviceToken(r *http.Request) string {
	return strings.ToLower(strings.TrimPrefix(r.URL.Path, "/3/device/"))
}

// check returns the reason of the first failing check, or "" to accept.
func (s *Server) check(cs *connState, r *http.Request) (reason string, timestamp int64) {
	// 2. Method.
	if r.Method != http.MethodPost {
		return "MethodNotAllowed", 0
	}
	// 3. Path.
	tok, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if !ok {
		return "BadPath", 0
	}
	if tok == "" {
		return "MissingDeviceToken", 0
	}
	// 4. Repeated headers.
	for _, v := range r.Header {
		if len(v) > 1 {
			return "DuplicateHeaders", 0
		}
	}
	// 5. Device token form.
	if !validToken(tok, s.cfg.TokenHexLen) {
		return "BadDeviceToken", 0
	}
	tok = strings.ToLower(tok)
	// 6. Headers.
	h := r.Header
	if id, ok := header(h, "apns-id"); ok && !apnsIDPattern.MatchString(id) {
		return "BadMessageId", 0
	}
	pushType := "alert"
	if pt, ok := header(h, "apns-push-type"); ok {
		if _, known := pushTypeSuffix[pt]; !known {
			return "InvalidPushType", 0
		}
		pushType = pt
	}
	if p, ok := header(h, "apns-priority"); ok {
		switch p {
		case "1", "5":
		case "10":
			if pushType == "background" {
				return "BadPriority", 0
			}
		default:
			return "BadPriority", 0
		}
	}
	if e, ok := header(h, "apns-expiration"); ok {
		if n, err := strconv.ParseInt(e, 10, 64); err != nil || n < 0 {
			return "BadExpirationDate", 0
		}
	}
	if c, ok := header(h, "apns-collapse-id"); ok && len(c) > maxCollapseID {
		return "BadCollapseId", 0
	}
	topic, ok := header(h, "apns-topic")
	if !ok || topic == "" {
		if !cs.certAuth || cs.certTopic == "" {
			return "MissingTopic", 0
		}
		topic = cs.certTopic
	}
	suffix := pushTypeSuffix[pushType]
	if !strings.HasSuffix(topic, suffix) || len(topic) == len(suffix) {
		return "BadTopic", 0
	}
	if len(s.cfg.Topics) > 0 && !topicAllowed(s.cfg.Topics, strings.TrimSuffix(topic, suffix)) {
		return "TopicDisallowed", 0
	}
	// 7. Provider token.
	if !cs.certAuth {
		if reason := s.checkProviderToken(cs, h.Get("authorization")); reason != "" {
			return reason, 0
		}
	}
	// 8. Payload.
	limit := maxPayload
	if pushType == "voip" {
		limit = maxVOIPPayload
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return "PayloadEmpty", 0 // the stream broke; nothing usable arrived
	}
	if len(body) == 0 {
		return "PayloadEmpty", 0
	}
	if len(body) > limit {
		return "PayloadTooLarge", 0
	}
	if !json.Valid(body) {
		// Apple documents no reason for this; accept and say so.
		if n := s.invalidLog.Add(1); n&(n-1) == 0 {
			s.log.Warn("accepted a payload that is not valid JSON", "token", tok, "count", n)
		}
	}
	// 9. Token state.
	if s.dead[tok] {
		return "Unregistered", s.started.UnixMilli()
	}
	if bound, ok := s.cfg.TokenTopics[tok]; ok && bound != topic {
		return "DeviceTokenNotForTopic", 0
	}
	// 10. Per-token rate limit.
	if !s.limiter.Allow(tok, s.cfg.Now()) {
		return "TooManyRequests", 0
	}
	// 11. Injected faults.
	if len(s.cfg.Failures) > 0 {
		x := rand01()
		for _, f := range s.cfg.Failures {
			if x < f.Rate {
				return f.Reason, 0
			}
			x -= f.Rate
		}
	}
	return "", 0
}

// header returns a header's only value and whether it was present.
func header(h http.Header, key string) (string, bool) {
	v := h.Values(key)
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}

func validToken(tok string, hexLen int) bool {
	if len(tok)%2 != 0 || (hexLen > 0 && len(tok) != hexLen) {
		return false
	}
	_, err := hex.DecodeString(tok)
	return err == nil
}

func topicAllowed(allowed []string, bundle string) bool {
	for _, a := range allowed {
		if a == bundle {
			return true
		}
	}
	return false
}

func (s *Server) writeError(w http.ResponseWriter, reason string, timestamp int64) {
	status := reasonStatus[reason]
	w.Header().Set("content-type", "application/json")
	if reason == "Shutdown" {
		// Makes the stock HTTP/2 server send GOAWAY and close the
		// connection once idle, as Apple does after Shutdown.
		w.Header().Set("Connection", "close")
	}
	if s.cfg.RetryAfter > 0 && (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((s.cfg.RetryAfter+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(status)
	if timestamp != 0 {
		_, _ = io.WriteString(w, `{"reason":"`+reason+`","timestamp":`+strconv.FormatInt(timestamp, 10)+`}`)
		return
	}
	_, _ = io.WriteString(w, `{"reason":"`+reason+`"}`)
}

func (s *Server) latency() time.Duration {
	d := s.cfg.Latency
	if s.cfg.Jitter > 0 {
		d += time.Duration((rand01()*2 - 1) * float64(s.cfg.Jitter))
	}
	return max(d, 0)
}

// checkProviderToken applies step 7: form, signature, team, age, key and
// update rate, remembering the connection's first team and key. A bearer
// already accepted on this connection skips parsing and signature checks.
func (s *Server) checkProviderToken(cs *connState, auth string) string {
	// The auth scheme is case-insensitive (RFC 9110 §11.1): some clients
	// send "Bearer".
	if len(auth) < len("bearer ") || !strings.EqualFold(auth[:len("bearer ")], "bearer ") {
		return "MissingProviderToken"
	}
	bearer := auth[len("bearer "):]
	if bearer == "" {
		return "MissingProviderToken"
	}
	now := s.cfg.Now()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if bearer == cs.bearer {
		if now.Sub(cs.iat) > maxTokenAge {
			return "ExpiredProviderToken"
		}
		return ""
	}
	if bearer == cs.prevBearer {
		// A push signed just before a refresh can reach us after the
		// first push with the new token (streams race on the wire); every
		// client has that race, so the previous token stays usable until
		// it expires and does not count as another update.
		if now.Sub(cs.prevIat) > maxTokenAge {
			return "ExpiredProviderToken"
		}
		return ""
	}
	claims, ok := s.parseJWT(bearer)
	if !ok {
		return "InvalidProviderToken"
	}
	iat := time.Unix(claims.iat, 0)
	switch {
	case iat.Sub(now) > maxTokenAge:
		return "InvalidProviderToken"
	case cs.team != "" && claims.iss != cs.team:
		return "InvalidProviderToken"
	case now.Sub(iat) > maxTokenAge:
		return "ExpiredProviderToken"
	case cs.keyID != "" && claims.kid != cs.keyID:
		return "UnrelatedKeyIdInToken"
	case cs.bearer != "" && iat.Sub(cs.iat) < minTokenUpdateGap:
		return "TooManyProviderTokenUpdates"
	}
	if cs.bearer != "" {
		s.stats.tokenUpdates.Add(1)
	}
	cs.prevBearer, cs.prevIat = cs.bearer, cs.iat
	cs.team, cs.keyID, cs.bearer, cs.iat = claims.iss, claims.kid, bearer, iat
	cs.markOpen()
	return ""
}

type jwtClaims struct {
	kid, iss string
	iat      int64
}

// parseJWT checks an ES256 JWT's form (and signature, with trust keys).
func (s *Server) parseJWT(bearer string) (jwtClaims, bool) {
	parts := strings.Split(bearer, ".")
	if len(parts) != 3 {
		return jwtClaims{}, false
	}
	var head struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	var body struct {
		Iss string          `json:"iss"`
		Iat json.RawMessage `json:"iat"`
	}
	if !decodeSegment(parts[0], &head) || !decodeSegment(parts[1], &body) {
		return jwtClaims{}, false
	}
	if head.Alg != "ES256" || head.Kid == "" || body.Iss == "" {
		return jwtClaims{}, false
	}
	iat, err := strconv.ParseInt(string(body.Iat), 10, 64)
	if err != nil {
		return jwtClaims{}, false
	}
	// Strict: the last character's unused bits must be zero, or 16
	// spellings of one signature would all verify.
	sig, err := base64.RawURLEncoding.Strict().DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return jwtClaims{}, false
	}
	if len(s.trustKeys) > 0 {
		digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		rr := new(big.Int).SetBytes(sig[:32])
		ss := new(big.Int).SetBytes(sig[32:])
		verified := false
		for _, k := range s.trustKeys {
			if ecdsa.Verify(k, digest[:], rr, ss) {
				verified = true
				break
			}
		}
		if !verified {
			return jwtClaims{}, false
		}
	}
	return jwtClaims{kid: head.Kid, iss: body.Iss, iat: iat}, true
}

func decodeSegment(seg string, v any) bool {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return false
	}
	return json.Unmarshal(b, v) == nil
}
