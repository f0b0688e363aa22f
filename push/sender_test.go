package push_test

import (
	"context"
	"testing"

	"github.com/kpush/kpush/push"
	"github.com/kpush/kpush/push/apnssim"
)

func TestSendDelivered(t *testing.T) {
	sim := startSim(t, apnssim.Config{})
	s := newSender(t, sim, nil)
	m := alertMessage(token(1))
	res := s.Send(context.Background(), m, token(1))
	if res.Class != push.Delivered || res.Status != 200 || res.Err != nil {
		t.Fatalf("Send = %+v, want delivered", res)
	}
	if want := push.APNsID(m.ID, token(1)); res.APNsID != want {
		t.Errorf("apns-id = %q, want the echoed %q", res.APNsID, want)
	}
	st := sim.Stats()
	if st.Accepted != 1 || st.Tokens[token(1)] != 1 {
		t.Errorf("stats = %+v, want one accepted for %s", st, token(1))
	}
}
