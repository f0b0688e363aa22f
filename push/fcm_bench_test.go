package push_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"

	"github.com/kpush/kpush/push"
	"github.com/kpush/kpush/push/fcmsim"
)

// BenchmarkFCMSend measures messages/s through one FCMSender (default
// connections) to the FCM simulator over TLS, and, as the reference in the
// same run, a bare loop of net/http requests at the same concurrency to the
// same simulator over as many HTTP/2 clients (stock net/http transports,
// used round-robin, as the sender does): prebuilt bodies, an access token
// fetched once, no classification, no bound of its own. vs_raw is the
// sender's share of the bare rate, both medians over alternating rounds.
// (A single stock client with default settings is no reference: past the
// simulator's 100 streams it opens connections it cannot keep,
// MaxIdleConnsPerHost being 2, and spends its time in TLS handshakes.)
//
//	flock /tmp/kpush-bench.lock go test -run '^$' -bench FCMSend -benchtime 50000x ./push/
func BenchmarkFCMSend(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sim := startFCMSim(b, fcmsim.Config{Logger: quiet})
	s := newFCMSender(b, sim, func(c *push.FCMConfig) { c.Connections = 0; c.Logger = quiet })
	tokens := make([]string, 1024)
	for i := range tokens {
		tokens[i] = fcmToken(i)
	}
	m, err := push.ParseMessage(mustEncode(b, fcmMessage(tokens...)))
	if err != nil {
		b.Fatal(err)
	}
	send := func(i int) bool {
		res := s.Send(context.Background(), m, tokens[i%len(tokens)])
		if !res.OK() {
			fmt.Fprintln(os.Stderr, "FCM send:", res.Class, res.Status, res.Reason, res.Err)
		}
		return res.OK()
	}
	run(b, 2*benchConcurrency, send) // warm up the connections

	raw := newBareFCM(b, sim, 4) // the sender's default connections
	bodies := make([][]byte, len(tokens))
	for i, tok := range tokens {
		bodies[i], _ = m.FCMRequest(tok)
	}
	post := func(i int) bool { return raw.post(bodies[i%len(bodies)]) }
	run(b, 2*benchConcurrency, post)

	// The machine is shared and its load comes in bursts: the sender and
	// the bare loop alternate in rounds of b.N/rounds sends each (which
	// goes first alternates too), and the medians are compared, so a
	// burst that lands on one round moves neither side much.
	const rounds = 10
	per := max(b.N/rounds, 1)
	var rates, refRates, cpus, refCPUs []float64
	measure := func(f func(int) bool) (rate, cpuPer float64) {
		start, cpu0 := time.Now(), processCPU(b)
		run(b, per, f)
		elapsed, cpu := time.Since(start), processCPU(b)-cpu0
		return float64(per) / elapsed.Seconds(), float64(cpu.Microseconds()) / float64(per)
	}
	b.ResetTimer()
	for r := range rounds {
		for j := range 2 {
			if (r+j)%2 == 0 {
				rate, c := measure(send)
				rates, cpus = append(rates, rate), append(cpus, c)
			} else {
				rate, c := measure(post)
				refRates, refCPUs = append(refRates, rate), append(refCPUs, c)
			}
		}
	}
	b.StopTimer()
	if b.N >= 1000 {
		fmt.Fprintf(os.Stderr, "BenchmarkFCMSend n=%d, by round: sender %.0f msg/s, bare %.0f msg/s\n", b.N, rates, refRates)
	}
	rate, refRate, cpuPer, refCPUPer := median(rates), median(refRates), median(cpus), median(refCPUs)
	b.ReportMetric(rate, "msg/s")
	b.ReportMetric(refRate, "raw_msg/s")
	b.ReportMetric(rate/refRate, "vs_raw")
	b.ReportMetric(cpuPer, "cpu_us/msg")
	b.ReportMetric(cpuPer/refCPUPer, "cpu_vs_raw")
	b.ReportMetric(0, "ns/op")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// bareFCM is the reference client: stock net/http, no classification, no
// token handling.
type bareFCM struct {
	url, auth string
	clients   []*http.Client
	next      atomic.Uint64
}

func newBareFCM(b *testing.B, sim *fcmsim.Server, conns int) *bareFCM {
	caPEM, err := os.ReadFile(sim.CAFile())
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	r := &bareFCM{}
	for range conns {
		protocols := new(http.Protocols)
		protocols.SetHTTP2(true)
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Protocols: protocols, ForceAttemptHTTP2: true}
		b.Cleanup(tr.CloseIdleConnections)
		r.clients = append(r.clients, &http.Client{Transport: tr})
	}
	client := r.clients[0]
	var sa struct {
		PrivateKey  string `json:"private_key"`
		ClientEmail string `json:"client_email"`
		TokenURI    string `json:"token_uri"`
		ProjectID   string `json:"project_id"`
	}
	if err := json.Unmarshal(mustRead(b, sim.ServiceAccountFile()), &sa); err != nil {
		b.Fatal(err)
	}
	cfg := &jwt.Config{Email: sa.ClientEmail, PrivateKey: []byte(sa.PrivateKey), Scopes: []string{push.FCMScope}, TokenURL: sa.TokenURI}
	tok, err := cfg.TokenSource(context.WithValue(context.Background(), oauth2.HTTPClient, client)).Token()
	if err != nil {
		b.Fatal(err)
	}
	r.url, r.auth = sim.URL()+"/v1/projects/"+sa.ProjectID+"/messages:send", "Bearer "+tok.AccessToken
	return r
}

func (r *bareFCM) post(body []byte) bool {
	req, _ := http.NewRequest(http.MethodPost, r.url, bytes.NewReader(body))
	req.Header.Set("Authorization", r.auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.clients[r.next.Add(1)%uint64(len(r.clients))].Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bare FCM post:", err)
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
