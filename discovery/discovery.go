// Package discovery turns a --servers value into the queued servers to use
// now, and keeps it current as servers come and go.
//
// A --servers value is a list of entries, each one of:
//
//	host:port                     one server
//	dns:NAME:PORT                 every A and AAAA address of NAME, on PORT
//	                              (a Kubernetes headless Service, a compose
//	                              service with replicas)
//	dns+srv:NAME                  every target:port of the SRV records of
//	                              NAME (_kestrel._tcp.queued.ns.svc)
//
// The servers are the union over the entries. A Watcher resolves the DNS
// entries at start and again every interval. A name that fails to resolve,
// or resolves to nothing, keeps the addresses it last resolved to (a
// cluster never shrinks to nothing because its DNS hiccuped); the Watcher
// logs it and counts it for /metrics.
//
// SRV targets are kept as names (queued-0.queued.ns.svc.cluster.local:22133)
// and resolved when a connection is made: a StatefulSet pod keeps its name
// when it is rescheduled with a new address, so it stays the same server.
// Dial them with a Dialer on the same Resolver, so those names resolve where
// the SRV records did, and a DNS outage does not cut a client off from
// servers it has been using.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often DNS entries are resolved again.
const DefaultInterval = 10 * time.Second

// ErrBadServers: an entry of the server list is malformed.
var ErrBadServers = errors.New("bad server list")

// entry is one element of a server list.
type entry struct {
	raw  string
	addr string // host:port, for a fixed server
	name string // DNS name, for dns: and dns+srv:
	port string // for dns:
	srv  bool
}

func (e entry) dynamic() bool { return e.name != "" }

// List is a parsed server list.
type List struct{ entries []entry }

// Parse parses server list entries (one per element; callers split a
// comma-separated flag). Surrounding spaces are ignored; empty entries
// are skipped.
func Parse(entries []string) (List, error) {
	var l List
	seen := map[string]bool{}
	for _, raw := range entries {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		e, err := parseEntry(raw)
		if err != nil {
			return List{}, err
		}
		if seen[raw] {
			return List{}, fmt.Errorf("%w: %s listed twice", ErrBadServers, raw)
		}
		seen[raw] = true
		l.entries = append(l.entries, e)
	}
	if len(l.entries) == 0 {
		return List{}, fmt.Errorf("%w: no servers given (host:port, dns:NAME:PORT or dns+srv:NAME)", ErrBadServers)
	}
	return l, nil
}

// ParseComma parses a comma-separated server list.
func ParseComma(s string) (List, error) { return Parse(strings.Split(s, ",")) }

func parseEntry(raw string) (entry, error) {
	switch {
	case strings.HasPrefix(raw, "dns+srv:"):
		name := strings.TrimPrefix(raw, "dns+srv:")
		if name == "" || strings.Contains(name, ":") {
			return entry{}, fmt.Errorf("%w: %q: want dns+srv:NAME, e.g. dns+srv:_kestrel._tcp.queued.default.svc.cluster.local", ErrBadServers, raw)
		}
		return entry{raw: raw, name: name, srv: true}, nil
	case strings.HasPrefix(raw, "dns:"):
		host, port, err := net.SplitHostPort(strings.TrimPrefix(raw, "dns:"))
		if err != nil || host == "" || !validPort(port) {
			return entry{}, fmt.Errorf("%w: %q: want dns:NAME:PORT, e.g. dns:queued.default.svc.cluster.local:22133", ErrBadServers, raw)
		}
		return entry{raw: raw, name: host, port: port}, nil
	}
	host, port, err := net.SplitHostPort(raw)
	if err != nil || host == "" || !validPort(port) {
		return entry{}, fmt.Errorf("%w: %q is not host:port; want host:port (port 1 to 65535), dns:NAME:PORT or dns+srv:NAME", ErrBadServers, raw)
	}
	return entry{raw: raw, addr: raw}, nil
}

func validPort(p string) bool {
	n, err := strconv.ParseUint(p, 10, 16)
	return err == nil && n > 0
}

// Dynamic reports whether the list has a DNS entry, that is whether its
// servers can change while running.
func (l List) Dynamic() bool {
	for _, e := range l.entries {
		if e.dynamic() {
			return true
		}
	}
	return false
}

// String is the list as given, comma-separated.
func (l List) String() string {
	raw := make([]string, len(l.entries))
	for i, e := range l.entries {
		raw[i] = e.raw
	}
	return strings.Join(raw, ",")
}

// NewResolver returns a Resolver that asks the DNS server at addr
// (host:port) instead of the system's, over the network Go's resolver
// chooses (UDP, TCP for long answers). For a cluster DNS that is not in
// /etc/resolv.conf, and for tests.
func NewResolver(addr string) *net.Resolver {
	var d net.Dialer
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}
}

// Options configure a Watcher.
type Options struct {
	// Resolver looks the names up; nil means net.DefaultResolver.
	Resolver *net.Resolver
	// Interval between resolutions; 0 means DefaultInterval.
	Interval time.Duration
	// Timeout bounds one resolution of all names; 0 means 5 s.
	Timeout time.Duration
	// Logger for changes and failures; nil means slog.Default().
	Logger *slog.Logger
}

// Watcher keeps the current servers of a List.
type Watcher struct {
	list     List
	res      *net.Resolver
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger

	failures atomic.Uint64 // resolutions of a name that failed
	stale    atomic.Int64  // names whose last resolution failed

	mu       sync.Mutex
	lastGood map[string][]string // by entry: its addresses last resolved
	failing  map[string]string   // by entry: the error of its failing resolution
	current  []string
}

// NewWatcher returns a Watcher of l. It resolves nothing until Resolve or
// Run.
func NewWatcher(l List, o Options) *Watcher {
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Watcher{list: l, res: o.Resolver, interval: o.Interval, timeout: o.Timeout, log: o.Logger,
		lastGood: map[string][]string{}, failing: map[string]string{}}
}

// Resolver is the resolver the Watcher uses; dial with it too.
func (w *Watcher) Resolver() *net.Resolver { return w.res }

// Dynamic reports whether the servers can change: the list has a DNS name.
func (w *Watcher) Dynamic() bool { return w.list.Dynamic() }

// Interval is the time between resolutions.
func (w *Watcher) Interval() time.Duration { return w.interval }

// Failures counts the resolutions of a name that failed (or found
// nothing) since the Watcher was made.
func (w *Watcher) Failures() uint64 { return w.failures.Load() }

// Stale is the number of names whose last resolution failed, so that the
// servers they contribute are the last good ones (or none, if they never
// resolved).
func (w *Watcher) Stale() int { return int(w.stale.Load()) }

// Servers returns the servers found by the last Resolve: the fixed ones in
// the order given, then each name's, sorted.
func (w *Watcher) Servers() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.current)
}

// Resolve looks every DNS entry up once and returns the servers: the
// union of the fixed ones and, per name, what it resolved to now or, if
// that failed, last time (in the order of Servers). The error reports the
// names that failed; the servers are still the best known.
func (w *Watcher) Resolve(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	var errs []error
	var servers []string
	seen := map[string]bool{}
	add := func(addrs ...string) {
		for _, a := range addrs {
			if !seen[a] {
				seen[a] = true
				servers = append(servers, a)
			}
		}
	}
	for _, e := range w.list.entries {
		if !e.dynamic() {
			add(e.addr)
			continue
		}
		addrs, err := w.lookup(ctx, e)
		if err == nil && len(addrs) == 0 {
			err = errors.New("no records")
		}
		w.mu.Lock()
		_, wasFailing := w.failing[e.raw]
		if err != nil {
			w.failures.Add(1)
			w.failing[e.raw] = err.Error()
			addrs = w.lastGood[e.raw]
		} else {
			delete(w.failing, e.raw)
			w.lastGood[e.raw] = addrs
		}
		w.stale.Store(int64(len(w.failing)))
		w.mu.Unlock()
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("resolve %s: %w", e.raw, err))
			level := slog.LevelWarn
			if wasFailing {
				level = slog.LevelDebug // said once; /metrics keeps counting
			}
			w.log.Log(ctx, level, "server discovery failed; keeping the servers it last found", "servers", e.raw, "kept", len(addrs), "err", err)
		case wasFailing:
			w.log.Info("server discovery works again", "servers", e.raw, "found", len(addrs))
		}
		add(addrs...)
	}
	w.mu.Lock()
	old := w.current
	w.current = servers
	w.mu.Unlock()
	if added, removed := diff(old, servers); len(added)+len(removed) > 0 && w.list.Dynamic() {
		w.log.Info("servers changed", "servers", len(servers), "added", strings.Join(added, ","), "removed", strings.Join(removed, ","))
	}
	return servers, errors.Join(errs...)
}

func (w *Watcher) lookup(ctx context.Context, e entry) ([]string, error) {
	if e.srv {
		_, recs, err := w.res.LookupSRV(ctx, "", "", e.name)
		if err != nil {
			return nil, err
		}
		addrs := make([]string, 0, len(recs))
		for _, r := range recs {
			addrs = append(addrs, net.JoinHostPort(strings.TrimSuffix(r.Target, "."), strconv.Itoa(int(r.Port))))
		}
		return dedupe(addrs), nil
	}
	ips, err := w.res.LookupIPAddr(ctx, e.name)
	if err != nil {
		return nil, err
	}
	addrs := make([]string, 0, len(ips))
	for _, ip := range ips {
		addrs = append(addrs, net.JoinHostPort(ip.String(), e.port))
	}
	return dedupe(addrs), nil
}

func dedupe(addrs []string) []string {
	slices.Sort(addrs)
	return slices.Compact(addrs)
}

// Run calls update with the servers after every resolution (every
// interval) until ctx is done. It does not resolve at once: call Resolve
// first for the initial set.
func (w *Watcher) Run(ctx context.Context, update func(servers []string)) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		servers, _ := w.Resolve(ctx) // failures are logged and counted
		if ctx.Err() != nil {
			return
		}
		update(servers)
	}
}

// diff returns the servers in next but not in prev (added) and those in
// prev but not in next (removed).
func diff(prev, next []string) (added, removed []string) {
	for _, s := range next {
		if !slices.Contains(prev, s) {
			added = append(added, s)
		}
	}
	for _, s := range prev {
		if !slices.Contains(next, s) {
			removed = append(removed, s)
		}
	}
	return added, removed
}

// Err describes the names whose last resolution failed, or is nil.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	for _, e := range w.list.entries {
		if msg, ok := w.failing[e.raw]; ok {
			errs = append(errs, fmt.Errorf("resolve %s: %s", e.raw, msg))
		}
	}
	return errors.Join(errs...)
}

// Dialer dials host:port addresses, resolving host names with Resolver and
// remembering the addresses each name last resolved to. When a lookup fails
// for a reason other than "no such host" (the DNS server is down, times
// out, answers SERVFAIL), it dials the addresses the name had at its last
// good lookup: a server in use stays reachable through a DNS outage, as a
// Watcher keeps its last good set of servers. A name that no longer exists
// is not dialled at old addresses (they may belong to another server by
// now), and a name never resolved has nothing to fall back on.
//
// One Dialer serves any number of names and goroutines.
type Dialer struct {
	// Resolver looks the names up; nil means net.DefaultResolver.
	Resolver *net.Resolver

	mu   sync.Mutex
	last map[string][]string // by host name: its addresses at the last good lookup
}

// DialContext connects to address (host:port) on network; ctx bounds the
// lookup and the dial.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var nd net.Dialer
	host, port, err := net.SplitHostPort(address)
	if err != nil || net.ParseIP(host) != nil {
		return nd.DialContext(ctx, network, address)
	}
	res := d.Resolver
	if res == nil {
		res = net.DefaultResolver
	}
	addrs, err := res.LookupHost(ctx, host)
	d.mu.Lock()
	switch {
	case err == nil && len(addrs) > 0:
		if d.last == nil {
			d.last = map[string][]string{}
		}
		d.last[host] = addrs
	case isNotFound(err):
		delete(d.last, host)
	case len(d.last[host]) > 0:
		addrs, err = d.last[host], nil
	}
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var firstErr error
	for _, a := range addrs {
		c, err := nd.DialContext(ctx, network, net.JoinHostPort(a, port))
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		firstErr = &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
	}
	return nil, firstErr
}

func isNotFound(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}
