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
// token; item counts per queue item.
type Stats struct {
	Delivered  uint64 // tokens APNs accepted
	DeadTokens uint64 // tokens recorded in <queue>_invalid_tokens
	Failed     uint64 // tokens dead-lettered to <queue>_failed (or stopped by bad credentials)
	Retries    uint64 // in-process retry attempts
	Requeued   uint64 // tokens sent to the delay queue <queue>_retry
	Items      uint64 // queue items finished (confirmed, or about to be)
	InFlight   int64  // queue items being worked on
	Held       int64  // open reads held on the servers
}

// metrics owns the worker's counters and its Prometheus registry (never
// the global one, so several workers can live in one process).
type metrics struct {
	w   *Worker
	reg *prometheus.Registry

	delivered atomic.Uint64
	dead      atomic.Uint64
	failedTot atomic.Uint64
	retries   atomic.Uint64
	requeued  atomic.Uint64
	items     atomic.Uint64
	inFlight  atomic.Int64
	held      atomic.Int64
	healthy   atomic.Bool

	failedVec *prometheus.CounterVec
	latency   prometheus.Histogram
	serversUp *prometheus.GaugeVec

	mu          sync.Mutex
	lastSummary time.Time
	lastDeliv   uint64
}

func newMetrics(w *Worker) *metrics {
	m := &metrics{w: w, reg: prometheus.NewRegistry(), lastSummary: time.Now()}
	m.healthy.Store(true)
	m.failedVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kpush_worker_failed_total",
		Help: "Tokens that were not delivered, by class (dead-token, bad-message, bad-credentials) and APNs or worker reason.",
	}, []string{"class", "reason"})
	// Pre-create the common series so dashboards and alerts see zeros
	// instead of absent series.
	for _, cr := range [][2]string{
		{push.DeadToken.String(), "Unregistered"}, {push.DeadToken.String(), "BadDeviceToken"},
		{push.BadMessage.String(), ReasonInvalidMessage}, {push.BadMessage.String(), ReasonExpired},
		{push.BadMessage.String(), ReasonMaxAttempts},
	} {
		m.failedVec.WithLabelValues(cr[0], cr[1])
	}
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "kpush_worker_delivery_latency_seconds",
		Help:    "Time from the producer's enqueue (message enqueued_at) to APNs accepting the push.",
		Buckets: prometheus.ExponentialBucketsRange(0.001, 900, 24),
	})
	m.serversUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kpush_worker_server_up",
		Help: "1 while the worker's fetch connection to the queued server works.",
	}, []string{"server"})
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.reg.MustRegister(
		counter("kpush_worker_delivered_total", "Tokens APNs accepted.", &m.delivered),
		counter("kpush_worker_retries_total", "In-process retry attempts after a transient failure.", &m.retries),
		counter("kpush_worker_requeued_total", "Tokens re-queued through the delay queue <queue>_retry.", &m.requeued),
		counter("kpush_worker_items_total", "Queue items finished.", &m.items),
		gauge("kpush_worker_in_flight", "Queue items being worked on.", func() float64 { return float64(m.inFlight.Load()) }),
		gauge("kpush_worker_open_reads", "Open (unconfirmed) reads held on the queued servers.", func() float64 { return float64(m.held.Load()) }),
		gauge("kpush_worker_pool_saturation", "Running pool workers divided by the pool's size.", func() float64 {
			return float64(w.pool.RunningWorkers()) / float64(w.pool.MaxConcurrency())
		}),
		gauge("kpush_worker_pool_waiting_tasks", "Tasks waiting in the pool's bounded queue.", func() float64 { return float64(w.pool.WaitingTasks()) }),
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

func (m *metrics) failed(class push.Class, reason string) { m.failedN(class, reason, 1) }

func (m *metrics) failedN(class push.Class, reason string, n int) {
	if reason == "" {
		reason = "unknown"
	}
	m.failedVec.WithLabelValues(class.String(), reason).Add(float64(n))
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
		Delivered:  m.delivered.Load(),
		DeadTokens: m.dead.Load(),
		Failed:     m.failedTot.Load(),
		Retries:    m.retries.Load(),
		Requeued:   m.requeued.Load(),
		Items:      m.items.Load(),
		InFlight:   m.inFlight.Load(),
		Held:       m.held.Load(),
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
	w.log.Info("summary", "delivered", s.Delivered, "failed", s.Failed, "dead_tokens", s.DeadTokens,
		"retried", s.Retries, "requeued", s.Requeued, "in_flight", s.InFlight, "open_reads", s.Held,
		"rate", fmt.Sprintf("%.0f/s", rate))
}
