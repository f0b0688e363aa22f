package producer

import (
	"context"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestCollector(t *testing.T) {
	up := startQueued(t, syncNever)
	down := freeAddr(t)
	p := newTestProducer(t, []string{up, down}, WithLogger(slog.New(slog.DiscardHandler)))
	for range 6 {
		if err := p.EnqueueRaw(context.Background(), "metrics", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(p.Collector())
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			if c := m.GetCounter(); c != nil {
				got[key] = c.GetValue()
			} else {
				got[key] = m.GetGauge().GetValue()
			}
		}
	}
	want := map[string]float64{
		"kpush_producer_requests_total result=stored server=" + up:   6,
		"kpush_producer_requests_total result=failed server=" + down: 1,
		"kpush_producer_requests_total result=unknown server=" + up:  0,
		"kpush_producer_server_up server=" + up:                      1,
		"kpush_producer_server_up server=" + down:                    0,
		"kpush_producer_in_flight server=" + up:                      0,
		"kpush_producer_servers":                                     2,
		"kpush_producer_discovery_failures_total":                    0,
		"kpush_producer_discovery_stale_names":                       0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if len(got) != 2*(5+2)+3 {
		t.Errorf("got %d series, want %d: %v", len(got), 2*(5+2)+3, got)
	}
}
