package fcmsim

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/kpush/kpush/internal/fsync"
)

// The development service account the simulator writes; the project and
// e-mail are made up.
const (
	ServiceAccountFileName = "service-account.json"
	DevProject             = "kpush-dev"
	DevClientEmail         = "kpush-fcm-sim@kpush-dev.iam.gserviceaccount.com"
	// TokenPath is the token endpoint's path in the written token_uri;
	// any POST outside /v1/ and /sim/ is served as the token endpoint.
	TokenPath = "/token"
)

// Rules of the JWT assertion, as Google applies them.
const (
	jwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	messagingScope = "https://www.googleapis.com/auth/firebase.messaging"
	// cloudScope covers every Google API, FCM included; the Firebase
	// Admin SDK asks for it (and others) rather than for messagingScope.
	cloudScope   = "https://www.googleapis.com/auth/cloud-platform"
	maxAssertion = time.Hour       // exp - iat
	clockSkew    = 5 * time.Minute // allowed between the client's clock and ours
)

// serviceAccount is the development service account and its file.
type serviceAccount struct {
	path      string
	key       *rsa.PrivateKey
	ProjectID string
	file      map[string]any // the file's fields, kept when token_uri is rewritten
}

func loadOrCreateServiceAccount(path string) (*serviceAccount, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createServiceAccount(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read simulator service account: %w", err)
	}
	var file map[string]any
	if err := json.Unmarshal(b, &file); err != nil {
		return nil, fmt.Errorf("simulator service account %s is not JSON (%v): remove it to regenerate", path, err)
	}
	keyPEM, _ := file["private_key"].(string)
	project, _ := file["project_id"].(string)
	key, err := parseRSAPrivateKey(keyPEM)
	if err != nil || project == "" {
		return nil, fmt.Errorf("simulator service account %s has no usable private_key or project_id: remove it to regenerate", path)
	}
	return &serviceAccount{path: path, key: key, ProjectID: project, file: file}, nil
}

func createServiceAccount(path string) (*serviceAccount, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	var id [20]byte
	_, _ = rand.Read(id[:])
	file := map[string]any{
		"type":           "service_account",
		"project_id":     DevProject,
		"private_key_id": fmt.Sprintf("%x", id),
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   DevClientEmail,
		"client_id":      "100000000000000000001",
		"auth_uri":       "https://accounts.google.com/o/oauth2/auth",
		"token_uri":      "",
	}
	a := &serviceAccount{path: path, key: key, ProjectID: DevProject, file: file}
	if err := a.write(); err != nil {
		return nil, err
	}
	return a, nil
}

// writeTokenURI points the file's token_uri at the simulator, rewriting
// the file only when it changed.
func (a *serviceAccount) writeTokenURI(uri string) error {
	if a.file["token_uri"] == uri {
		return nil
	}
	a.file["token_uri"] = uri
	return a.write()
}

func (a *serviceAccount) write() error {
	b, err := json.MarshalIndent(a.file, "", "  ")
	if err != nil {
		return err
	}
	// 0644 like the APNs simulator's development key: the key signs for
	// the simulator only, and a worker in another container (another uid)
	// reads it from a shared volume.
	return fsync.WriteFile(a.path, append(b, '\n'), 0o644)
}

func parseRSAPrivateKey(pemText string) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		return nil, errors.New("not PEM")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an RSA key")
	}
	return rk, nil
}

// loadTrustKey reads an RSA public key from a service-account JSON file
// (its private_key) or a PEM public key or certificate.
func loadTrustKey(path string) (*rsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read trust key: %w", err)
	}
	var file struct {
		PrivateKey string `json:"private_key"`
	}
	if json.Unmarshal(b, &file) == nil && file.PrivateKey != "" {
		k, err := parseRSAPrivateKey(file.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("trust key %s: private_key: %w", path, err)
		}
		return &k.PublicKey, nil
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("trust key %s: neither a service-account JSON file nor PEM", path)
	}
	var pub any
	switch block.Type {
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("trust key %s: %w", path, err)
	}
	k, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("trust key %s: not an RSA key (service accounts sign RS256)", path)
	}
	return k, nil
}

// issuedTokens are the access tokens the simulator issued, with their
// expiry.
type issuedTokens struct {
	mu sync.RWMutex
	m  map[string]time.Time
}

func (t *issuedTokens) issue(ttl time.Duration) string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	tok := "ya29.sim-" + base64.RawURLEncoding.EncodeToString(b[:])
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, exp := range t.m {
		if now.After(exp) {
			delete(t.m, k)
		}
	}
	t.m[tok] = now.Add(ttl)
	return tok
}

// valid reports whether tok was issued here and has not expired.
func (t *issuedTokens) valid(tok string) bool {
	t.mu.RLock()
	exp, ok := t.m[tok]
	t.mu.RUnlock()
	return ok && time.Now().Before(exp)
}

func (t *issuedTokens) revokeAll() {
	t.mu.Lock()
	clear(t.m)
	t.mu.Unlock()
}

// serveToken answers the token endpoint: a form POST with the JWT-bearer
// grant and a signed assertion gets an access token; anything else gets
// Google's OAuth2 error.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.tokenError(w, "invalid_request", "the body is not a form: "+err.Error())
		return
	}
	if g := r.PostForm.Get("grant_type"); g != jwtBearerGrant {
		s.tokenError(w, "unsupported_grant_type", fmt.Sprintf("grant_type %q: want %s", g, jwtBearerGrant))
		return
	}
	if err := s.verifyAssertion(r.PostForm.Get("assertion"), r.URL.Path, time.Now()); err != nil {
		s.tokenError(w, "invalid_grant", err.Error())
		return
	}
	tok := s.issued.issue(s.cfg.TokenTTL)
	s.stats.issued.Add(1)
	secs := int64((s.cfg.TokenTTL + time.Second - 1) / time.Second)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "expires_in": secs, "token_type": "Bearer"})
}

func (s *Server) tokenError(w http.ResponseWriter, code, desc string) {
	s.stats.refused.Add(1)
	s.log.Info("refused an access-token request", "error", code, "description", desc)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// verifyAssertion checks a service account's JWT: RS256, signed by a
// trusted key, aud naming this token endpoint, the messaging scope, and
// iat/exp current and at most an hour apart.
func (s *Server) verifyAssertion(assertion, path string, now time.Time) error {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return errors.New("the assertion is not a JWT (three base64url parts)")
	}
	var head struct {
		Alg string `json:"alg"`
	}
	var claims struct {
		Iss   string `json:"iss"`
		Aud   string `json:"aud"`
		Scope string `json:"scope"`
		Iat   int64  `json:"iat"`
		Exp   int64  `json:"exp"`
	}
	if err := decodeSegment(parts[0], &head); err != nil {
		return fmt.Errorf("JWT header: %v", err)
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return fmt.Errorf("JWT claims: %v", err)
	}
	if head.Alg != "RS256" {
		return fmt.Errorf("JWT alg %q: service accounts sign RS256", head.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return errors.New("invalid JWT signature encoding")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	verified := false
	s.trustMu.RLock()
	trusted := s.trusted
	s.trustMu.RUnlock()
	for _, k := range trusted {
		if rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return errors.New("invalid JWT signature")
	}
	aud, err := url.Parse(claims.Aud)
	if err != nil || aud.Scheme != "https" || aud.Path != path {
		return fmt.Errorf("JWT aud %q does not name this token endpoint (https://…%s)", claims.Aud, path)
	}
	if claims.Iss == "" {
		return errors.New("JWT has no iss (the service account's client_email)")
	}
	if scopes := " " + claims.Scope + " "; !strings.Contains(scopes, " "+messagingScope+" ") && !strings.Contains(scopes, " "+cloudScope+" ") {
		return fmt.Errorf("JWT scope %q lacks %s (or %s)", claims.Scope, messagingScope, cloudScope)
	}
	iat, exp := time.Unix(claims.Iat, 0), time.Unix(claims.Exp, 0)
	switch {
	case claims.Iat == 0 || claims.Exp == 0:
		return errors.New("JWT lacks iat or exp")
	case iat.After(now.Add(clockSkew)):
		return errors.New("JWT iat is in the future (check the clock)")
	case !exp.After(now.Add(-clockSkew)):
		return errors.New("JWT has expired")
	case exp.Sub(iat) > maxAssertion:
		return errors.New("JWT exp is more than an hour after iat")
	}
	return nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
