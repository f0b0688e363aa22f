package push_test

import (
	"testing"
	"time"

	"github.com/kpush/kpush/push"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		status int
		reason string
		want   push.Class
	}{
		{200, "", push.Delivered},
		{410, "Unregistered", push.DeadToken},
		{410, "ExpiredToken", push.DeadToken},
		{400, "BadDeviceToken", push.DeadToken},
		{400, "DeviceTokenNotForTopic", push.DeadToken},
		{429, "TooManyRequests", push.Retry},
		{500, "InternalServerError", push.Retry},
		{503, "ServiceUnavailable", push.Retry},
		{503, "Shutdown", push.Retry},
		{400, "IdleTimeout", push.Retry},
		{0, "", push.Retry},
		{413, "PayloadTooLarge", push.BadMessage},
		{400, "BadCollapseId", push.BadMessage},
		{400, "PayloadEmpty", push.BadMessage},
		{405, "MethodNotAllowed", push.BadMessage},
		{403, "InvalidProviderToken", push.BadCredentials},
		{403, "ExpiredProviderToken", push.BadCredentials},
		{403, "UnrelatedKeyIdInToken", push.BadCredentials},
		{403, "BadEnvironmentKeyIdInToken", push.BadCredentials},
		{403, "BadEnvironmentKeyInToken", push.BadCredentials},
		{429, "TooManyProviderTokenUpdates", push.BadCredentials},
		{400, "BadTopic", push.BadCredentials},
		{400, "TopicDisallowed", push.BadCredentials},
		// Unknown reasons, classified safely by status.
		{403, "SomethingNew", push.BadCredentials},
		{400, "SomethingNew", push.BadMessage},
		{410, "SomethingNew", push.DeadToken},
		{502, "SomethingNew", push.Retry},
		{302, "", push.Retry},
	}
	for _, tc := range cases {
		if got := push.Classify(tc.status, tc.reason); got != tc.want {
			t.Errorf("Classify(%d, %q) = %v, want %v", tc.status, tc.reason, got, tc.want)
		}
	}
	if push.ClassUnknown.String() != "unknown" || push.DeadToken.String() != "dead-token" {
		t.Errorf("class names: %v %v", push.ClassUnknown, push.DeadToken)
	}
}

func TestBackoffFullJitter(t *testing.T) {
	b := push.Backoff{ServerBase: time.Second, TokenBase: 100 * time.Millisecond, Max: 10 * time.Second}
	cases := []struct {
		reason  string
		attempt int
		ceiling time.Duration
	}{
		{"ServiceUnavailable", 0, time.Second},
		{"ServiceUnavailable", 2, 4 * time.Second},
		{"ServiceUnavailable", 10, 10 * time.Second},
		{"ServiceUnavailable", 200, 10 * time.Second},
		{"TooManyRequests", 1, 200 * time.Millisecond},
		{"Shutdown", 5, 0},
		{"", -3, time.Second},
	}
	for _, tc := range cases {
		var maxSeen time.Duration
		for range 2000 {
			d := b.Delay(tc.reason, tc.attempt)
			if d < 0 || d > tc.ceiling {
				t.Fatalf("Delay(%q, %d) = %v outside [0, %v]", tc.reason, tc.attempt, d, tc.ceiling)
			}
			maxSeen = max(maxSeen, d)
		}
		if tc.ceiling > 0 && maxSeen < tc.ceiling/2 {
			t.Errorf("Delay(%q, %d): max of 2000 draws %v, want spread up to %v", tc.reason, tc.attempt, maxSeen, tc.ceiling)
		}
	}
	if d := (push.Backoff{}).Delay("ServiceUnavailable", 30); d > push.DefaultMaxBackoff {
		t.Errorf("default backoff %v over the 15 min cap", d)
	}
}
