package queued

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The admin HTTP listener (admin_listen / --admin-listen) serves:
//
//	/metrics     Prometheus text: server and per-queue numbers (label
//	             queue), read from Stats at scrape time, plus Go runtime and
//	             process metrics (resident memory, open files).
//	/healthz     200 "ok" when UP, 200 "readonly" when READONLY (reads are
//	             still served, so consumers keep draining it), 503
//	             "quiescent" when QUIESCENT and 503 "shutting down" once
//	             shutdown has begun: a load balancer or orchestrator probe
//	             takes the server out exactly when it stops doing useful work.
//	/stats.json  the numbers of the `stats` command as one JSON object, under
//	             the same names; queues under "queues" by name.
//	/debug/pprof/  Go profiles (CPU, heap, goroutines, ...), for `go tool
//	             pprof http://ADDR/debug/pprof/profile`; only with --pprof
//	             (Config.Pprof), since a profile shows the command line and
//	             a CPU profile costs the server while it runs.
//
// The admin address is meant for a private interface: it is off unless
// admin_listen / --admin-listen is set.
//
// Server.ListenAndServe owns the listener; it calls AdminHandler, which
// this file sets.
func init() { AdminHandler = NewAdminHandler }

// adminSource is what the admin endpoints read from a server.
type adminSource interface {
	Stats() ServerStats
	Status() Status
	shuttingDown() bool
}

// shuttingDown reports whether Shutdown has begun.
func (s *Server) shuttingDown() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// NewAdminHandler returns the handler of the admin HTTP endpoints for s.
func NewAdminHandler(s *Server) http.Handler {
	return newAdminHandler(s, s.config().Pprof)
}

func newAdminHandler(src adminSource, withPprof bool) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newStatsCollector(src),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		code, body := health(src)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		w.Write([]byte(body + "\n"))
	})
	mux.HandleFunc("GET /stats.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(statsJSON(src.Stats()))
	})
	if withPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func health(src adminSource) (int, string) {
	if src.shuttingDown() {
		return http.StatusServiceUnavailable, "shutting down"
	}
	switch src.Status() {
	case StatusQuiescent:
		return http.StatusServiceUnavailable, "quiescent"
	case StatusReadOnly:
		return http.StatusOK, "readonly"
	}
	return http.StatusOK, "ok"
}

// statsJSON renders st under the names the `stats` command uses.
func statsJSON(st ServerStats) map[string]any {
	queues := make(map[string]map[string]any, len(st.Queues))
	var pairs []statPair
	for i := range st.Queues {
		qs := &st.Queues[i]
		m := map[string]any{}
		pairs = qs.statPairs(pairs[:0])
		for _, p := range pairs {
			m[p.name] = p.value
		}
		if qs.Unavailable != "" {
			m["unavailable"] = qs.Unavailable
		}
		queues[qs.Name] = m
	}
	return map[string]any{
		"uptime":            st.Uptime,
		"time":              st.Time,
		"version":           st.Version,
		"build":             st.Build,
		"status":            st.Status,
		"curr_items":        st.CurrItems,
		"total_items":       st.TotalItems,
		"bytes":             st.Bytes,
		"curr_connections":  st.CurrConnections,
		"total_connections": st.TotalConnections,
		"cmd_get":           st.CmdGet,
		"cmd_set":           st.CmdSet,
		"cmd_peek":          st.CmdPeek,
		"get_hits":          st.GetHits,
		"get_misses":        st.GetMisses,
		"bytes_read":        st.BytesRead,
		"bytes_written":     st.BytesWritten,
		"queue_creates":     st.QueueCreates,
		"queue_deletes":     st.QueueDeletes,
		"queue_expires":     st.QueueExpires,
		"queues":            queues,
	}
}

// statsCollector turns one Stats snapshot per scrape into Prometheus
// metrics: nothing is counted twice and nothing is kept between scrapes,
// so a deleted queue's series simply disappear.
type statsCollector struct {
	src adminSource

	uptime, info, status                      *prometheus.Desc
	items, itemsTotal, bytes                  *prometheus.Desc
	conns, connsTotal, commands, hits, misses *prometheus.Desc
	bytesRead, bytesWritten                   *prometheus.Desc
	queueCreates, queueDeletes, queueExpires  *prometheus.Desc
	queueGauges                               []queueMetric
	queueCounters                             []queueMetric
	queueUnavailable                          *prometheus.Desc
}

type queueMetric struct {
	desc  *prometheus.Desc
	value func(*QueueStats) float64
}

func newStatsCollector(src adminSource) *statsCollector {
	const ns = "kpush_queued_"
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(ns+name, help, labels, nil)
	}
	qd := func(name, help string) *prometheus.Desc { return d(name, help, "queue") }
	c := &statsCollector{
		src:          src,
		uptime:       d("uptime_seconds", "Seconds since the server started."),
		info:         d("info", "Always 1; the version and build labels say which queued this is.", "version", "build"),
		status:       d("status", "1 for the server's current status (UP, READONLY or QUIESCENT), 0 for the others.", "status"),
		items:        d("items", "Items waiting in all queues (stats curr_items)."),
		itemsTotal:   d("items_added_total", "Items ever added to any queue (stats total_items)."),
		bytes:        d("bytes", "Bytes of item data waiting in all queues (stats bytes)."),
		conns:        d("connections", "Open client connections (stats curr_connections)."),
		connsTotal:   d("connections_total", "Client connections ever accepted (stats total_connections)."),
		commands:     d("commands_total", "Commands received, by command (stats cmd_get, cmd_set, cmd_peek).", "command"),
		hits:         d("get_hits_total", "Gets that returned an item (stats get_hits)."),
		misses:       d("get_misses_total", "Gets that found the queue empty (stats get_misses)."),
		bytesRead:    d("read_bytes_total", "Bytes read from clients (stats bytes_read)."),
		bytesWritten: d("written_bytes_total", "Bytes written to clients (stats bytes_written)."),
		queueCreates: d("queue_creates_total", "Queues created (stats queue_creates)."),
		queueDeletes: d("queue_deletes_total", "Queues deleted (stats queue_deletes)."),
		queueExpires: d("queue_expires_total", "Queues removed by expiry (stats queue_expires)."),
		queueUnavailable: qd("queue_unavailable",
			"1 if the queue's journal could not be opened and the queue refuses commands."),
	}
	f := func(v int64) float64 { return float64(v) }
	c.queueGauges = []queueMetric{
		{qd("queue_items", "Items waiting in the queue, in memory or read-behind (items)."), func(q *QueueStats) float64 { return f(q.Items) }},
		{qd("queue_bytes", "Bytes of item data waiting in the queue (bytes)."), func(q *QueueStats) float64 { return f(q.Bytes) }},
		{qd("queue_memory_items", "Items whose data is held in memory (mem_items)."), func(q *QueueStats) float64 { return f(q.MemItems) }},
		{qd("queue_memory_bytes", "Bytes of item data held in memory (mem_bytes)."), func(q *QueueStats) float64 { return f(q.MemBytes) }},
		{qd("queue_journal_bytes", "Size of the queue's journal files on disk (logsize)."), func(q *QueueStats) float64 { return f(q.Logsize) }},
		{qd("queue_age_seconds", "How long the last item handed out had waited (age)."), func(q *QueueStats) float64 { return f(q.Age) / 1000 }},
		{qd("queue_waiters", "Gets blocked waiting for an item (waiters)."), func(q *QueueStats) float64 { return f(q.Waiters) }},
		{qd("queue_open_transactions", "Open reads not yet closed or aborted (open_transactions)."), func(q *QueueStats) float64 { return f(q.OpenTransactions) }},
		{qd("queue_create_time_seconds", "Unix time the queue was created (create_time)."), func(q *QueueStats) float64 { return f(q.CreateTime) }},
	}
	c.queueCounters = []queueMetric{
		{qd("queue_items_added_total", "Items ever added to the queue (total_items)."), func(q *QueueStats) float64 { return f(q.TotalItems) }},
		{qd("queue_expired_items_total", "Items dropped or moved because they expired (expired_items)."), func(q *QueueStats) float64 { return f(q.ExpiredItems) }},
		{qd("queue_discarded_items_total", "Items dropped by discard_old_when_full (discarded)."), func(q *QueueStats) float64 { return f(q.Discarded) }},
		{qd("queue_transactions_total", "Open reads ever started (transactions)."), func(q *QueueStats) float64 { return f(q.Transactions) }},
		{qd("queue_canceled_transactions_total", "Open reads aborted or returned by a dropped connection (canceled_transactions)."), func(q *QueueStats) float64 { return f(q.CanceledTransactions) }},
		{qd("queue_flushes_total", "Times the queue was flushed (total_flushes)."), func(q *QueueStats) float64 { return f(q.TotalFlushes) }},
		{qd("queue_journal_rewrites_total", "Journal rewrites (journal_rewrites)."), func(q *QueueStats) float64 { return f(q.JournalRewrites) }},
		{qd("queue_journal_rotations_total", "Journal rotations (journal_rotations)."), func(q *QueueStats) float64 { return f(q.JournalRotations) }},
	}
	return c
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.uptime, c.info, c.status, c.items, c.itemsTotal, c.bytes,
		c.conns, c.connsTotal, c.commands, c.hits, c.misses, c.bytesRead, c.bytesWritten,
		c.queueCreates, c.queueDeletes, c.queueExpires, c.queueUnavailable} {
		ch <- d
	}
	for _, m := range c.queueGauges {
		ch <- m.desc
	}
	for _, m := range c.queueCounters {
		ch <- m.desc
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.uptime, float64(st.Uptime))
	gauge(c.info, 1, st.Version, st.Build)
	for _, s := range []Status{StatusUp, StatusReadOnly, StatusQuiescent} {
		v := 0.0
		if s.String() == st.Status {
			v = 1
		}
		gauge(c.status, v, s.String())
	}
	gauge(c.items, float64(st.CurrItems))
	counter(c.itemsTotal, st.TotalItems)
	gauge(c.bytes, float64(st.Bytes))
	gauge(c.conns, float64(st.CurrConnections))
	counter(c.connsTotal, st.TotalConnections)
	counter(c.commands, st.CmdGet, "get")
	counter(c.commands, st.CmdSet, "set")
	counter(c.commands, st.CmdPeek, "peek")
	counter(c.hits, st.GetHits)
	counter(c.misses, st.GetMisses)
	counter(c.bytesRead, st.BytesRead)
	counter(c.bytesWritten, st.BytesWritten)
	counter(c.queueCreates, st.QueueCreates)
	counter(c.queueDeletes, st.QueueDeletes)
	counter(c.queueExpires, st.QueueExpires)
	for i := range st.Queues {
		q := &st.Queues[i]
		for _, m := range c.queueGauges {
			gauge(m.desc, m.value(q), q.Name)
		}
		for _, m := range c.queueCounters {
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, m.value(q), q.Name)
		}
		unavailable := 0.0
		if q.Unavailable != "" {
			unavailable = 1
		}
		gauge(c.queueUnavailable, unavailable, q.Name)
	}
}
