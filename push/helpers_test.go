package push_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kpush/kpush/push"
	"github.com/kpush/kpush/push/apnssim"
)

// fakeClock is a clock tests move by hand; shared by a sender and a
// simulator it makes "an hour later" instant.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// writeAuthKey writes a fresh ES256 key as Apple's .p8 (PKCS#8 PEM).
func writeAuthKey(t testing.TB, dir string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("AuthKey_%d.p8", time.Now().UnixNano()))
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startSim starts a simulator on 127.0.0.1:0 with a TLS directory in a
// temp dir unless cfg names one.
func startSim(t testing.TB, cfg apnssim.Config) *apnssim.Server {
	t.Helper()
	if cfg.TLSDir == "" {
		cfg.TLSDir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	sim, err := apnssim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// newSender builds a token-auth sender pointed at sim; mod adjusts cfg.
func newSender(t testing.TB, sim *apnssim.Server, mod func(*push.Config)) *push.Sender {
	t.Helper()
	cfg := push.Config{
		Host:        sim.URL(),
		CAFile:      sim.CAFile(),
		AuthKeyFile: writeAuthKey(t, t.TempDir()),
		KeyID:       "ABC123DEFG",
		TeamID:      "DEF123GHIJ",
		Connections: 2,
		Logger:      testLogger(t),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := push.NewSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// token returns a distinct 64-hex-digit device token.
func token(i int) string {
	return fmt.Sprintf("%064x", 0xabc0000+i)
}

func alertMessage(tokens ...string) *push.Message {
	return &push.Message{
		ID:     "msg-" + strings.Join(tokens, ",")[:8],
		Tokens: tokens,
		Topic:  "com.example.app",
		Alert:  &push.Alert{Title: "Hello", Body: "World"},
	}
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func rsaPKCS8PEM(t testing.TB) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// testLogger writes to the test's output: shown with -v or on failure.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}
