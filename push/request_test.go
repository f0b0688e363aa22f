package push_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sideshow/apns2"
	apnstoken "github.com/sideshow/apns2/token"

	"github.com/kpush/kpush/push"
)

// TestSenderRequestIsApns2s: a push from Sender reaches the server as the
// same request (path, headers, body) as a bare apns2 client's push of the
// same notification, so APNs has no more to parse from kpush than from
// apns2 (the worker benchmark compares the two, docs/benchmarks.md).
func TestSenderRequestIsApns2s(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		lines := []string{r.Proto + " " + r.Method + " " + r.URL.Path, "body " + string(body)}
		for k, v := range r.Header {
			if k == "Authorization" {
				// Both sign their own token; the scheme must match.
				v = []string{strings.SplitN(v[0], ".", 2)[0]}
			}
			lines = append(lines, k+": "+strings.Join(v, ","))
		}
		slices.Sort(lines)
		mu.Lock()
		seen = append(seen, strings.Join(lines, "\n"))
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	ca := writeFile(t, dir, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	key := writeAuthKey(t, dir)

	s, err := push.NewSender(push.Config{Host: srv.URL, CAFile: ca, AuthKeyFile: key, KeyID: "ABC123DEFG", TeamID: "DEF123GHIJ", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m, err := push.ParseMessage([]byte(`{"tokens":["` + token(0) + `"],"topic":"com.example.app","alert":"hello"}`))
	if err != nil {
		t.Fatal(err)
	}
	if r := s.Send(context.Background(), m, token(0)); !r.OK() {
		t.Fatalf("Sender: %+v", r)
	}

	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	saved := apns2.DialTLS
	defer func() { apns2.DialTLS = saved }()
	apns2.DialTLS = func(network, addr string, cfg *tls.Config) (net.Conn, error) {
		cfg = cfg.Clone()
		cfg.RootCAs = pool
		return tls.Dial(network, addr, cfg)
	}
	ak, err := apnstoken.AuthKeyFromFile(key)
	if err != nil {
		t.Fatal(err)
	}
	c := apns2.NewTokenClient(&apnstoken.Token{AuthKey: ak, KeyID: "ABC123DEFG", TeamID: "DEF123GHIJ"})
	c.Host = srv.URL
	defer c.CloseIdleConnections()
	if _, err := c.Push(&apns2.Notification{DeviceToken: token(0), Topic: "com.example.app", Payload: []byte(`{"aps":{"alert":"hello"}}`)}); err != nil {
		t.Fatalf("apns2: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != seen[1] {
		t.Fatalf("requests differ:\nSender:\n%s\n\napns2:\n%s", seen[0], seen[len(seen)-1])
	}
	t.Logf("both:\n%s", seen[0])
}
