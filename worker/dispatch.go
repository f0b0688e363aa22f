package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sideshow/apns2"

	"github.com/kpush/kpush/producer"
	"github.com/kpush/kpush/push"
)

// InvalidTokenRecord is appended to <queue>_invalid_tokens for every dead
// token, so the application can prune it with any memcache client.
type InvalidTokenRecord struct {
	Token string `json:"token"`
	// Platform is "apns" (Token is a device token) or "fcm" (a
	// registration token).
	Platform push.Platform `json:"platform"`
	// Reason is APNs' reason or FCM's errorCode.
	Reason string `json:"reason"`
	// Timestamp is when APNs learnt the token was invalid (the 410
	// timestamp), or when the worker got the answer, in UNIX ms. Drop the
	// token only if it was registered before this instant.
	Timestamp int64  `json:"timestamp"`
	MessageID string `json:"message_id,omitempty"`
	Status    int    `json:"status,omitempty"`
	Topic     string `json:"topic,omitempty"`
}

// FailedRecord is appended to <queue>_failed for a message (or the tokens
// of a message) that can never be delivered.
type FailedRecord struct {
	Reason    string   `json:"reason"`
	Status    int      `json:"status,omitempty"`
	Error     string   `json:"error,omitempty"`
	Tokens    []string `json:"tokens,omitempty"`     // APNs device tokens
	FCMTokens []string `json:"fcm_tokens,omitempty"` // FCM registration tokens
	Attempt   int      `json:"attempt,omitempty"`
	FailedAt  int64    `json:"failed_at"` // UNIX ms
	// Message is the message as queued, with Tokens and FCMTokens
	// narrowed to the failed ones; absent when the item was not a valid
	// message.
	Message *push.Message `json:"message,omitempty"`
	// Raw is the item as queued when it was not a valid message.
	Raw []byte `json:"raw,omitempty"`
}

// Reasons of the worker's own, in FailedRecord.Reason and the failed
// metric.
const (
	ReasonInvalidMessage = "InvalidMessage" // the item is not a valid push message
	ReasonExpired        = "Expired"        // past the message's expiration
	ReasonMaxAttempts    = "MaxAttempts"    // re-queued MaxRequeues times already
	// The worker has no credentials for the token's platform.
	ReasonNoAPNsCredentials = "NoAPNsCredentials"
	ReasonNoFCMCredentials  = "NoFCMCredentials"
)

// Errors of the tokens a worker without one platform's credentials cannot
// send, in their FailedRecord.
var (
	errNoAPNsCredentials = errors.New("APNs tokens not sent: this worker was started without APNs credentials (give it --auth-key/--key-id/--team-id or --cert)")
	errNoFCMCredentials  = errors.New("FCM tokens not sent: this worker was started without FCM credentials (give it --fcm-credentials)")
)

// item is one queue item being worked on: one open read on one connection.
type item struct {
	w       *Worker
	win     *window
	seq     uint64
	raw     []byte
	msg     *push.Message
	pending atomic.Int32
	// The item's pool tasks: its first nAPNs tokens go to APNs, the next
	// nFCM FCM tokens to FCM; or, when settleOnly is set, that one task
	// settles an item nothing is sent for (invalid, oversize, expired,
	// no credentials for any of its tokens).
	nAPNs, nFCM int
	settleOnly  func()
	started     int // tasks handed out; guarded by the pool's mutex

	mu      sync.Mutex
	dead    []push.Result
	retry   []push.Result
	bad     []push.Result
	aborted bool
}

// tasks is the number of pool tasks of the item: one per token sent.
func (it *item) tasks() int {
	if it.settleOnly != nil {
		return 1
	}
	return it.nAPNs + it.nFCM
}

func (it *item) runTask(i int) {
	switch {
	case it.settleOnly != nil:
		it.settleOnly()
	case i < it.nAPNs:
		it.sendToken(it.w.apns, it.msg.Tokens[i])
	default:
		it.sendToken(it.w.fcm, it.msg.FCMTokens[i-it.nAPNs])
	}
}

// dispatch starts work on an item just read, on the fetch loop's
// goroutine. It does not block: the pool takes the items in turn, and the
// budget of open reads bounds how many there are.
func (w *Worker) dispatch(win *window, seq uint64, raw []byte, oversize int64) {
	w.m.inFlight.Add(1)
	it := &item{w: w, win: win, seq: seq, raw: raw}
	defer w.pool.add(it)
	if oversize > 0 {
		err := fmt.Errorf("%w: item of %d bytes, over the worker's %d-byte limit (split messages to that many devices)", push.ErrInvalidMessage, oversize, maxItemSize)
		it.settleOnly = func() { it.settleInvalid(err) }
		return
	}
	msg, err := push.ParseMessage(raw)
	if err != nil {
		it.settleOnly = func() { it.settleInvalid(err) }
		return
	}
	it.msg = msg
	if msg.Expiration > 0 && time.Now().Unix() > msg.Expiration {
		it.settleOnly = func() {
			it.failAll(msg.Tokens, push.PlatformAPNs, ReasonExpired, nil)
			it.failAll(msg.FCMTokens, push.PlatformFCM, ReasonExpired, nil)
			it.settle()
		}
		return
	}
	// The platform is chosen once per message: each token's task knows
	// its sender. Tokens of a platform without credentials are
	// dead-lettered, never dropped.
	if w.apns != nil {
		it.nAPNs = len(msg.Tokens)
	} else {
		it.failAll(msg.Tokens, push.PlatformAPNs, ReasonNoAPNsCredentials, errNoAPNsCredentials)
	}
	if w.fcm != nil {
		it.nFCM = len(msg.FCMTokens)
	} else {
		it.failAll(msg.FCMTokens, push.PlatformFCM, ReasonNoFCMCredentials, errNoFCMCredentials)
	}
	if it.nAPNs+it.nFCM == 0 {
		it.settleOnly = it.settle
		return
	}
	it.pending.Store(int32(it.nAPNs + it.nFCM))
}

// failAll records tokens of one platform as undeliverable for reason,
// before any of the item's tasks runs.
func (it *item) failAll(tokens []string, p push.Platform, reason string, err error) {
	for _, tok := range tokens {
		it.bad = append(it.bad, push.Result{Token: tok, Platform: p, Class: push.BadMessage, Reason: reason, Err: err})
	}
}

func (it *item) sendToken(p *platform, tok string) {
	res, ok := it.w.sendWithRetries(p, it.msg, tok)
	res.Platform = p.name
	it.mu.Lock()
	switch {
	case !ok:
		it.aborted = true
	case res.Class == push.Delivered:
		p.delivered.Add(1)
		if it.msg.EnqueuedAt > 0 {
			p.latency.Observe(time.Since(time.UnixMilli(it.msg.EnqueuedAt)).Seconds())
		}
	case res.Class == push.DeadToken:
		it.dead = append(it.dead, res)
	case res.Class == push.BadMessage:
		it.bad = append(it.bad, res)
	default:
		it.retry = append(it.retry, res)
	}
	it.mu.Unlock()
	if it.pending.Add(-1) == 0 {
		it.settle()
	}
}

// sendWithRetries pushes to one token, retrying transient failures in
// process with a short full-jitter backoff. ok is false when the worker is
// stopping hard or the credentials are bad: the item must go back to the
// server unconfirmed.
func (w *Worker) sendWithRetries(p *platform, msg *push.Message, tok string) (res push.Result, ok bool) {
	for attempt := 0; ; attempt++ {
		res = p.pusher.Send(w.sendCtx, msg, tok)
		if w.sendCtx.Err() != nil {
			return res, false
		}
		switch res.Class {
		case push.Delivered, push.DeadToken, push.BadMessage:
			return res, true
		case push.BadCredentials:
			w.m.failed(p.name, push.BadCredentials, res.Reason)
			if p.name == push.PlatformFCM {
				w.fail(fmt.Errorf("%w: FCM answered %d %s (err %v): fix --fcm-credentials (the service account and its project), then restart",
					ErrBadCredentials, res.Status, res.Reason, res.Err))
			} else {
				w.fail(fmt.Errorf("%w: APNs answered %d %s (topic %q, err %v): fix --auth-key/--key-id/--team-id or --cert and the topic, then restart",
					ErrBadCredentials, res.Status, res.Reason, msg.Topic, res.Err))
			}
			return res, false
		}
		// Retry (or an unknown class, treated as retry: never lose).
		// TooManyRequests is about this device token and lasts seconds
		// (docs/apns.md): an in-process retry would only hit it again, so
		// it goes straight to the delay queue, as does any answer whose
		// Retry-After is longer than the in-process backoff allows.
		if attempt+1 >= w.cfg.Attempts || !w.fetching() || res.Reason == apns2.ReasonTooManyRequests || res.ServerRetryAfter > w.cfg.RetryMax {
			return res, true
		}
		p.retries.Add(1)
		ceiling := w.cfg.RetryMax
		if c := w.cfg.RetryBase << attempt; c > 0 && c < ceiling {
			ceiling = c
		}
		t := time.NewTimer(max(rand.N(ceiling+1), res.ServerRetryAfter))
		select {
		case <-t.C:
		case <-w.sendCtx.Done():
			t.Stop()
			return res, false
		}
	}
}

// settle stores the item's outcome records, then lets the connection
// confirm it. Records are STORED before the confirm, so a crash between
// the two duplicates a record but never loses one.
func (it *item) settle() {
	w := it.w
	if it.aborted || w.sendCtx.Err() != nil {
		w.m.inFlight.Add(-1)
		return
	}
	q := w.cfg.Queue
	now := time.Now()
	for _, r := range it.dead {
		ts := r.Timestamp
		if ts.IsZero() {
			ts = now
		}
		rec := InvalidTokenRecord{Token: r.Token, Platform: r.Platform, Reason: r.Reason, Timestamp: ts.UnixMilli(), MessageID: it.msg.ID, Status: r.Status}
		if r.Platform == push.PlatformAPNs {
			rec.Topic = it.msg.Topic
		}
		if !w.storeJSON(q+"_invalid_tokens", rec, 0) {
			w.m.inFlight.Add(-1)
			return
		}
		w.m.failed(r.Platform, push.DeadToken, r.Reason)
	}
	bad := it.bad
	if len(it.retry) > 0 {
		var delay time.Duration
		for _, r := range it.retry {
			delay = max(delay, r.RetryAfter)
		}
		delay = max(delay, w.cfg.MinRequeueDelay)
		last := it.retry[len(it.retry)-1]
		next := *it.msg
		next.Tokens, next.FCMTokens = splitTokens(it.retry)
		next.Attempt++
		switch {
		case next.Attempt > w.cfg.MaxRequeues:
			for _, r := range it.retry {
				r.Reason = fmt.Sprintf("%s after %d attempts: %s", ReasonMaxAttempts, it.msg.Attempt+1, reasonOf(r))
				bad = append(bad, r)
			}
		case it.msg.Expiration > 0 && now.Add(delay).Unix() > it.msg.Expiration:
			for _, r := range it.retry {
				r.Reason = fmt.Sprintf("%s before retry: %s", ReasonExpired, reasonOf(r))
				bad = append(bad, r)
			}
		default:
			data, err := next.Encode()
			if err != nil {
				for _, r := range it.retry {
					r.Reason, r.Err = ReasonInvalidMessage, err
					bad = append(bad, r)
				}
				break
			}
			retryQueue := q + "_retry"
			if w.noDelayQueue.Load() {
				retryQueue, delay = q, 0
			}
			if !w.store(retryQueue, data, delay) {
				w.m.inFlight.Add(-1)
				return
			}
			w.m.apns.requeued.Add(uint64(len(next.Tokens)))
			w.m.fcm.requeued.Add(uint64(len(next.FCMTokens)))
			w.log.Debug("re-queued for a later retry", "message_id", it.msg.ID, "tokens", len(next.Tokens), "fcm_tokens", len(next.FCMTokens), "attempt", next.Attempt, "delay", delay, "reason", reasonOf(last))
		}
	}
	if len(bad) > 0 && !it.storeFailed(bad, now) {
		w.m.inFlight.Add(-1)
		return
	}
	w.m.inFlight.Add(-1)
	w.m.items.Add(1)
	it.win.finish(it.seq)
}

// splitTokens returns the tokens of rs by platform, in order.
func splitTokens(rs []push.Result) (apns, fcm []string) {
	for _, r := range rs {
		if r.Platform == push.PlatformFCM {
			fcm = append(fcm, r.Token)
		} else {
			apns = append(apns, r.Token)
		}
	}
	return apns, fcm
}

func reasonOf(r push.Result) string {
	if r.Reason != "" {
		return r.Reason
	}
	if r.Err != nil {
		return r.Err.Error()
	}
	if r.Status != 0 {
		return fmt.Sprintf("status %d", r.Status)
	}
	return "unknown"
}

// storeFailed writes one FailedRecord per distinct reason.
func (it *item) storeFailed(bad []push.Result, now time.Time) bool {
	groups := map[string][]push.Result{}
	for _, r := range bad {
		groups[reasonOf(r)] = append(groups[reasonOf(r)], r)
	}
	reasons := make([]string, 0, len(groups))
	for r := range groups {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, reason := range reasons {
		rs := groups[reason]
		msg := *it.msg
		msg.Tokens, msg.FCMTokens = splitTokens(rs)
		rec := FailedRecord{Reason: reason, Status: rs[0].Status, Tokens: msg.Tokens, FCMTokens: msg.FCMTokens, Attempt: it.msg.Attempt, FailedAt: now.UnixMilli(), Message: &msg}
		if rs[0].Err != nil {
			rec.Error = rs[0].Err.Error()
		}
		if !it.w.storeJSON(it.w.cfg.Queue+"_failed", rec, 0) {
			return false
		}
		it.w.m.failedN(push.PlatformAPNs, push.BadMessage, failedMetricReason(reason), len(msg.Tokens))
		it.w.m.failedN(push.PlatformFCM, push.BadMessage, failedMetricReason(reason), len(msg.FCMTokens))
	}
	return true
}

// failedMetricReason keeps the label set small: the worker's own reasons
// carry details after the first word.
func failedMetricReason(reason string) string {
	for _, r := range []string{ReasonMaxAttempts, ReasonExpired, ReasonInvalidMessage} {
		if len(reason) >= len(r) && reason[:len(r)] == r {
			return r
		}
	}
	return reason
}

// settleInvalid dead-letters an item that is not a valid push message.
func (it *item) settleInvalid(perr error) {
	w := it.w
	rec := FailedRecord{Reason: ReasonInvalidMessage, Error: perr.Error(), FailedAt: time.Now().UnixMilli(), Raw: it.raw}
	w.log.Warn("invalid message dead-lettered", "queue", w.cfg.Queue+"_failed", "err", perr)
	if !w.storeJSON(w.cfg.Queue+"_failed", rec, 0) {
		w.m.inFlight.Add(-1)
		return
	}
	w.m.failed(platformNone, push.BadMessage, ReasonInvalidMessage)
	w.m.inFlight.Add(-1)
	w.m.items.Add(1)
	it.win.finish(it.seq)
}

func (w *Worker) storeJSON(queue string, v any, delay time.Duration) bool {
	data, err := json.Marshal(v)
	if err != nil {
		// Only plain types are marshalled; this is a bug.
		w.log.Error("cannot encode outcome record", "queue", queue, "err", err)
		return true
	}
	return w.store(queue, data, delay)
}

// store appends a record, retrying until a server stores it. It returns
// false when the worker stopped hard first: the item then stays
// unconfirmed and the server gives it back (a duplicate, never a loss).
func (w *Worker) store(queue string, data []byte, delay time.Duration) bool {
	backoff := 50 * time.Millisecond
	warned := false
	for {
		var opts []producer.EnqueueOption
		if delay > 0 {
			opts = append(opts, producer.Delay(delay))
		}
		err := w.enq.EnqueueRaw(w.sendCtx, queue, data, opts...)
		if err == nil {
			return true
		}
		if w.sendCtx.Err() != nil {
			return false
		}
		// The servers refuse the record itself (too large, say): retrying
		// cannot help, and holding the item would stall its connection.
		if errors.Is(err, producer.ErrRejected) || errors.Is(err, producer.ErrInvalidQueue) {
			w.log.Error("queue servers refused an outcome record; it is only in this log", "queue", queue, "record", string(data), "err", err)
			return true
		}
		if !warned {
			w.log.Warn("cannot store outcome record; retrying until a server takes it", "queue", queue, "err", err)
			warned = true
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-w.sendCtx.Done():
			t.Stop()
			return false
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
