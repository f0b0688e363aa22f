package worker

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kpush/kpush/push"
)

// Stats are the worker's counters since start. Token counts are per device
// or registration token; item counts per queue item.
type Stats struct {
	Delivered    uint64 // tokens APNs or FCM accepted
	FCMDelivered uint64 // of Delivered, the FCM registration tokens
	DeadTokens   uint64 // tokens recorded in <queue>_invalid_tokens
	Failed       uint64 // tokens dead-lettered to <queue>_failed (or stopped by bad credentials)
	Retries      uint64 // in-process retry attempts
	Requeued     uint64 // tokens sent to the delay queue <queue>_retry, both platforms
	Items        uint64 // queue items finished (confirmed, or about to be)
	InFlight     int64  // queue items being worked on
	Held         int64  // open reads held on the servers
}

// platformNone labels the failures of items that are not messages, which
// belong to no platform.
const platformNone push.Platform = "none"

// platform is one push service as the worker uses it: its sender and the
// counters of its tokens. A token's task holds its platform, so counting
// costs what it did with one platform: an atomic add, no lookup.
type platform struct {
	name      push.Platform
	pusher    Pusher // nil: no credentials for this platform
	delivered atomic.Uint64
	retries   atomic.Uint64
	requeued  atomic.Uint64
	latency   prometheus.Observer
}

// metrics owns the worker's counters and its Prometheus registry (never
// the global one, so several workers can live in one process).
type metrics struct {
	w   *Worker
	reg *prometheus.Registry

	// apns and fcm are never nil: a platform without credentials still
	// has its (zero) series.
	apns, fcm *platform
	dead      atomic.Uint64
	failedTot atomic.Uint64
	items     atomic.Uint64
	inFlight  atomic.Int64
	held      atomic.Int64
	healthy   atomic.Bool

	failedVec *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	serversUp *prometheus.GaugeVec

	mu          sync.Mutex
	lastSummary time.Time
	lastDeliv   uint64
}

func newMetrics(w *Worker, apns, fcm Pusher) *metrics {
	m := &metrics{w: w, reg: prometheus.NewRegistry(), lastSummary: time.Now(),
		apns: &platform{name: push.PlatformAPNs, pusher: apns},
		fcm:  &platform{name: push.PlatformFCM, pusher: fcm},
	}
	m.healthy.Store(true)
	m.failedVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kpush_worker_failed_total",
		Help: "Tokens that were not delivered, by platform (apns, fcm; none for items that are not messages), class (dead-token, bad-message, bad-credentials) and APNs, FCM or worker reason.",
	}, []string{"platform", "class", "reason"})
	// Pre-create the common series so dashboards and alerts see zeros
	// instead of absent series.
	for _, pcr := range [][3]push.Platform{
		{push.PlatformAPNs, "dead-token", "Unregistered"}, {push.PlatformAPNs, "dead-token", "BadDeviceToken"},
		{push.PlatformFCM, "dead-token", push.FCMUnregistered}, {push.PlatformFCM, "dead-token", push.FCMSenderIDMismatch},
		{platformNone, "bad-message", ReasonInvalidMessage},
		{push.PlatformAPNs, "bad-message", ReasonExpired}, {push.PlatformFCM, "bad-message", ReasonExpired},
		{push.PlatformAPNs, "bad-message", ReasonMaxAttempts}, {push.PlatformFCM, "bad-message", ReasonMaxAttempts},
	} {
		m.failedVec.WithLabelValues(string(pcr[0]), string(pcr[1]), string(pcr[2]))
	}
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "kpush_worker_delivery_latency_seconds",
		Help:    "Time from the producer's enqueue (message enqueued_at) to APNs or FCM accepting the push, by platform.",
		Buckets: prometheus.ExponentialBucketsRange(0.001, 900, 24),
	}, []string{"platform"})
	m.serversUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kpush_worker_server_up",
		Help: "1 while the worker's fetch connection to the queued server works.",
	}, []string{"server"})
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	for _, p := range []*platform{m.apns, m.fcm} {
		p.latency = m.latency.WithLabelValues(string(p.name))
		labels := prometheus.Labels{"platform": string(p.name)}
		perPlatform := func(name, help string, v *atomic.Uint64) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 { return float64(v.Load()) })
		}
		m.reg.MustRegister(
			perPlatform("kpush_worker_delivered_total", "Tokens APNs or FCM accepted, by platform.", &p.delivered),
			perPlatform("kpush_worker_retries_total", "In-process retry attempts after a transient failure, by platform.", &p.retries),
			perPlatform("kpush_worker_requeued_total", "Tokens re-queued through the delay queue <queue>_retry, by platform.", &p.requeued),
		)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.reg.MustRegister(
		counter("kpush_worker_items_total", "Queue items finished.", &m.items),
		gauge("kpush_worker_in_flight", "Queue items being worked on.", func() float64 { return float64(m.inFlight.Load()) }),
		gauge("kpush_worker_open_reads", "Open (unconfirmed) reads held on the queued servers.", func() float64 { return float64(m.held.Load()) }),
		gauge("kpush_worker_pool_saturation", "Pool goroutines running a push divided by the pool's size.", w.pool.saturation),
		gauge("kpush_worker_pool_waiting_tasks", "Pushes handed to the pool and not yet started.", func() float64 { return float64(w.pool.waiting()) }),
		gauge("kpush_worker_servers", "Queued servers the worker reads from now (fixed and found through DNS).", func() float64 { return float64(w.live.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kpush_worker_discovery_failures_total",
			Help: "Resolutions of a DNS server name (dns:, dns+srv:) that failed or found nothing; the servers it last found are kept."},
			func() float64 { return float64(w.servers.Failures()) }),
		gauge("kpush_worker_discovery_stale_names", "DNS server names whose last resolution failed, so that the servers they give are the last good ones.",
			func() float64 { return float64(w.servers.Stale()) }),
		m.failedVec, m.latency, m.serversUp,
	)
	return m
}

func (m *metrics) failed(p push.Platform, class push.Class, reason string) {
	m.failedN(p, class, reason, 1)
}

func (m *metrics) failedN(p push.Platform, class push.Class, reason string, n int) {
	if n == 0 {
		return
	}
	if reason == "" {
		reason = "unknown"
	}
	m.failedVec.WithLabelValues(string(p), class.String(), reason).Add(float64(n))
	if class == push.DeadToken {
		m.dead.Add(uint64(n))
	} else {
		m.failedTot.Add(uint64(n))
	}
}

func (m *metrics) serverUp(addr string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.serversUp.WithLabelValues(addr).Set(v)
}

// serverGone drops the series of a server no longer read from.
func (m *metrics) serverGone(addr string) { m.serversUp.DeleteLabelValues(addr) }

func (m *metrics) stats() Stats {
	return Stats{
		Delivered:    m.apns.delivered.Load() + m.fcm.delivered.Load(),
		FCMDelivered: m.fcm.delivered.Load(),
		DeadTokens:   m.dead.Load(),
		Failed:       m.failedTot.Load(),
		Retries:      m.apns.retries.Load() + m.fcm.retries.Load(),
		Requeued:     m.apns.requeued.Load() + m.fcm.requeued.Load(),
		Items:        m.items.Load(),
		InFlight:     m.inFlight.Load(),
		Held:         m.held.Load(),
	}
}

func (m *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	if m.w.cfg.Pprof {
		// Profiles of a live worker, only when asked for: a profile
		// shows the command line, and a CPU profile costs while it runs.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/healthz", func(rw http.ResponseWriter, _ *http.Request) {
		if !m.healthy.Load() {
			http.Error(rw, fmt.Sprintf("stopped: %v\n", m.w.fatal()), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(rw, "ok")
	})
	return mux
}

func (w *Worker) summaryLoop(stop <-chan struct{}) {
	if w.cfg.SummaryInterval < 0 {
		return
	}
	t := time.NewTicker(w.cfg.SummaryInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.logSummary()
		case <-stop:
			return
		}
	}
}

// logSummary writes the periodic one-line summary; rate is tokens
// delivered per second since the previous summary.
func (w *Worker) logSummary() {
	m := w.m
	s := m.stats()
	m.mu.Lock()
	now := time.Now()
	el := now.Sub(m.lastSummary).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(s.Delivered-m.lastDeliv) / el
	}
	m.lastSummary, m.lastDeliv = now, s.Delivered
	m.mu.Unlock()
	w.log.Info("summary", "delivered", s.Delivered, "fcm_delivered", s.FCMDelivered, "failed", s.Failed, "dead_tokens", s.DeadTokens,
		"retried", s.Retries, "requeued", s.Requeued, "in_flight", s.InFlight, "open_reads", s.Held,
		"rate", fmt.Sprintf("%.0f/s", rate))
}
