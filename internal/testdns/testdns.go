// Package testdns is a real DNS server for tests of server discovery: it
// answers SRV, A and AAAA queries over UDP on 127.0.0.1 from records the
// test changes while it runs, and can be told to fail (SERVFAIL).
package testdns

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// Server is a DNS server with a mutable zone.
type Server struct {
	// Addr is the server's host:port, for discovery.NewResolver.
	Addr string

	srv     *dns.Server
	failing atomic.Bool
	queries atomic.Int64

	mu   sync.Mutex
	srvs map[string][]*dns.SRV
	ips  map[string][]net.IP
}

// Start starts a server on 127.0.0.1:0; it stops when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: pc.LocalAddr().String(), srvs: map[string][]*dns.SRV{}, ips: map[string][]net.IP{}}
	started := make(chan struct{})
	s.srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve), NotifyStartedFunc: func() { close(started) }}
	go func() { _ = s.srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = s.srv.Shutdown() })
	return s
}

// Target is one SRV target: a host name (given an A record 127.0.0.1)
// and a port.
type Target struct {
	Host string
	Port int
}

// TargetOf splits "host:port".
func TargetOf(t testing.TB, hostport string) Target {
	t.Helper()
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return Target{Host: h, Port: n}
}

// SetSRV replaces the SRV records of name. Each target host that is not
// an IP address gets an A record of 127.0.0.1.
func (s *Server) SetSRV(name string, targets ...Target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rrs []*dns.SRV
	for _, t := range targets {
		host := dns.Fqdn(strings.ToLower(t.Host))
		rrs = append(rrs, &dns.SRV{
			Hdr:      dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 1},
			Priority: 0, Weight: 10, Port: uint16(t.Port), Target: host,
		})
		if net.ParseIP(t.Host) == nil {
			s.ips[host] = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
	}
	s.srvs[dns.Fqdn(strings.ToLower(name))] = rrs
}

// SetIPs replaces the A and AAAA records of name.
func (s *Server) SetIPs(name string, ips ...net.IP) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ips[dns.Fqdn(strings.ToLower(name))] = ips
}

// Fail makes every answer SERVFAIL while on.
func (s *Server) Fail(on bool) { s.failing.Store(on) }

// Queries counts the questions answered so far.
func (s *Server) Queries() int64 { return s.queries.Load() }

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if s.failing.Load() {
		m.Rcode = dns.RcodeServerFailure
		_ = w.WriteMsg(m)
		return
	}
	s.mu.Lock()
	found := false
	for _, q := range req.Question {
		name := strings.ToLower(q.Name)
		srvs, hasSRV := s.srvs[name]
		ips, hasIPs := s.ips[name]
		found = found || hasSRV || hasIPs
		switch q.Qtype {
		case dns.TypeSRV:
			for _, rr := range srvs {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		case dns.TypeA, dns.TypeAAAA:
			for _, ip := range ips {
				hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 1}
				if v4 := ip.To4(); v4 != nil && q.Qtype == dns.TypeA {
					hdr.Rrtype = dns.TypeA
					m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: v4})
				} else if ip.To4() == nil && q.Qtype == dns.TypeAAAA {
					hdr.Rrtype = dns.TypeAAAA
					m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip})
				}
			}
		}
	}
	s.mu.Unlock()
	if !found {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}
