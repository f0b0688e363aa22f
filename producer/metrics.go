package producer

import "github.com/prometheus/client_golang/prometheus"

var (
	descRequests = prometheus.NewDesc("kpush_producer_requests_total",
		"Set requests by server and result: stored, not_stored (queue full), failed (certainly not stored), unknown (no answer after the write), rejected (the item refused).",
		[]string{"server", "result"}, nil)
	descUp = prometheus.NewDesc("kpush_producer_server_up",
		"1 while the server is in rotation, 0 while it is down and being probed.",
		[]string{"server"}, nil)
	descInFlight = prometheus.NewDesc("kpush_producer_in_flight",
		"Set requests waiting for an answer.",
		[]string{"server"}, nil)
	descServers = prometheus.NewDesc("kpush_producer_servers",
		"Servers items are placed on now (fixed and found through DNS).", nil, nil)
	descDiscoveryFailures = prometheus.NewDesc("kpush_producer_discovery_failures_total",
		"Resolutions of a DNS server name (dns:, dns+srv:) that failed or found nothing; the servers it last found are kept.", nil, nil)
	descDiscoveryStale = prometheus.NewDesc("kpush_producer_discovery_stale_names",
		"DNS server names whose last resolution failed, so that the servers they give are the last good ones.", nil, nil)
)

// Collector returns a Prometheus collector of the Producer's per-server
// counters (the same numbers as Stats), to register in a registry the
// caller owns: reg.MustRegister(p.Collector()). Values are read at scrape
// time; there is no extra bookkeeping on the enqueue path.
func (p *Producer) Collector() prometheus.Collector { return collector{p} }

type collector struct{ p *Producer }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRequests
	ch <- descUp
	ch <- descInFlight
	ch <- descServers
	ch <- descDiscoveryFailures
	ch <- descDiscoveryStale
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	servers := c.p.set.Load().servers
	ch <- prometheus.MustNewConstMetric(descServers, prometheus.GaugeValue, float64(len(servers)))
	ch <- prometheus.MustNewConstMetric(descDiscoveryFailures, prometheus.CounterValue, float64(c.p.watcher.Failures()))
	ch <- prometheus.MustNewConstMetric(descDiscoveryStale, prometheus.GaugeValue, float64(c.p.watcher.Stale()))
	for _, s := range servers {
		st := s.stats()
		for _, r := range []struct {
			result string
			n      uint64
		}{
			{"stored", st.Stored}, {"not_stored", st.NotStored}, {"failed", st.Failed},
			{"unknown", st.Unknown}, {"rejected", st.Rejected},
		} {
			ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(r.n), s.addr, r.result)
		}
		up := 0.0
		if st.Healthy {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, s.addr)
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(st.InFlight), s.addr)
	}
}
