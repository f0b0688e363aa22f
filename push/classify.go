package push

import (
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/sideshow/apns2"
)

// Reasons apns2 v0.25.0 has no constant for (docs/apns.md §3).
const (
	ReasonUnrelatedKeyIDInToken      = "UnrelatedKeyIdInToken"
	ReasonBadEnvironmentKeyIDInToken = "BadEnvironmentKeyIdInToken"
	// ReasonBadEnvironmentKeyInToken is reported in the wild but absent
	// from Apple's table; treated like its documented sibling.
	ReasonBadEnvironmentKeyInToken = "BadEnvironmentKeyInToken"
)

// Class is what the sender should do after one push attempt.
type Class int

// The zero Class is deliberately not Delivered, so a forgotten assignment
// never reads as success.
const (
	ClassUnknown Class = iota
	// Delivered: APNs accepted the push (200).
	Delivered
	// DeadToken: the device token is invalid or unregistered; tell the app
	// to drop it (for 410, only if registered before Result.Timestamp).
	DeadToken
	// Retry: a transient failure (429, 5xx, network); send again after
	// Result.RetryAfter.
	Retry
	// BadMessage: the message itself is wrong; drop it with the reason.
	BadMessage
	// BadCredentials: our key, certificate, topic or configuration is
	// wrong; stop sending, keep the message, alert a human.
	BadCredentials
)

var classNames = [...]string{"unknown", "delivered", "dead-token", "retry", "bad-message", "bad-credentials"}

func (c Class) String() string {
	if c < 0 || int(c) >= len(classNames) {
		return "unknown"
	}
	return classNames[c]
}

// Platform is the push service a token belongs to.
type Platform string

// The platforms, as they appear in records and metric labels.
const (
	PlatformAPNs Platform = "apns"
	PlatformFCM  Platform = "fcm"
)

// Result is the outcome of sending one message to one token.
type Result struct {
	Token    string
	Platform Platform
	Class    Class
	Status   int    // HTTP status; 0 when no response arrived
	Reason   string // APNs reason or FCM errorCode (status without one), empty on 200
	APNsID   string // apns-id of the push (echoed or assigned by APNs)
	// Name is the message name FCM assigned, on 200 from FCM.
	Name string
	// Timestamp is set on 410: when APNs learnt the token was invalid.
	Timestamp time.Time
	// RetryAfter is the backoff before the next attempt when Class is
	// Retry: full jitter over the message's attempt count (docs/apns.md §3).
	RetryAfter time.Duration
	// ServerRetryAfter is the server's own Retry-After, 0 when it sent
	// none; RetryAfter is never shorter.
	ServerRetryAfter time.Duration
	// Err is the transport or validation error, if any.
	Err error
}

// OK reports whether the push was delivered.
func (r Result) OK() bool { return r.Class == Delivered }

// reasonClass maps every reason in Apple's table to a class (docs/apns.md §3).
var reasonClass = map[string]Class{
	apns2.ReasonBadCollapseID:               BadMessage,
	apns2.ReasonBadDeviceToken:              DeadToken,
	apns2.ReasonBadExpirationDate:           BadMessage,
	apns2.ReasonBadMessageID:                BadMessage,
	apns2.ReasonBadPriority:                 BadMessage,
	apns2.ReasonBadTopic:                    BadCredentials,
	apns2.ReasonDeviceTokenNotForTopic:      DeadToken,
	apns2.ReasonDuplicateHeaders:            BadMessage,
	apns2.ReasonIdleTimeout:                 Retry,
	apns2.ReasonInvalidPushType:             BadMessage,
	apns2.ReasonMissingDeviceToken:          BadMessage,
	apns2.ReasonMissingTopic:                BadCredentials,
	apns2.ReasonPayloadEmpty:                BadMessage,
	apns2.ReasonTopicDisallowed:             BadCredentials,
	apns2.ReasonBadCertificate:              BadCredentials,
	apns2.ReasonBadCertificateEnvironment:   BadCredentials,
	apns2.ReasonExpiredProviderToken:        BadCredentials,
	apns2.ReasonForbidden:                   BadCredentials,
	apns2.ReasonInvalidProviderToken:        BadCredentials,
	apns2.ReasonMissingProviderToken:        BadCredentials,
	ReasonUnrelatedKeyIDInToken:             BadCredentials,
	ReasonBadEnvironmentKeyIDInToken:        BadCredentials,
	ReasonBadEnvironmentKeyInToken:          BadCredentials,
	apns2.ReasonBadPath:                     BadMessage,
	apns2.ReasonMethodNotAllowed:            BadMessage,
	apns2.ReasonExpiredToken:                DeadToken,
	apns2.ReasonUnregistered:                DeadToken,
	apns2.ReasonPayloadTooLarge:             BadMessage,
	apns2.ReasonTooManyProviderTokenUpdates: BadCredentials,
	apns2.ReasonTooManyRequests:             Retry,
	apns2.ReasonInternalServerError:         Retry,
	apns2.ReasonServiceUnavailable:          Retry,
	apns2.ReasonShutdown:                    Retry,
}

// KnownReason reports whether reason is in Apple's table (or one of the
// variants kpush knows); unknown reasons are classified by status and
// should be logged.
func KnownReason(reason string) bool {
	_, ok := reasonClass[reason]
	return ok
}

// Classify maps an APNs response to a Class. Status 0 means no response (a
// network error) and is Retry. Unknown reasons are classified safely by
// status: 403 → BadCredentials, other 4xx → BadMessage, 5xx and anything
// else → Retry.
func Classify(status int, reason string) Class {
	if status == http.StatusOK {
		return Delivered
	}
	if c, ok := reasonClass[reason]; ok {
		return c
	}
	switch {
	case status == http.StatusGone:
		return DeadToken
	case status == http.StatusForbidden:
		return BadCredentials
	case status == http.StatusTooManyRequests:
		return Retry
	case status >= 400 && status < 500:
		return BadMessage
	default:
		return Retry
	}
}

// Backoff computes retry delays: full jitter, rand(0, min(Max,
// base·2^attempt)), with base ServerBase for 5xx and network errors and
// TokenBase for TooManyRequests (docs/apns.md §3). The zero value uses the
// defaults.
type Backoff struct {
	ServerBase time.Duration // default 1 min
	TokenBase  time.Duration // default 10 s
	Max        time.Duration // default 15 min
}

// Defaults for Backoff's zero fields.
const (
	DefaultServerBackoff = time.Minute
	DefaultTokenBackoff  = 10 * time.Second
	DefaultMaxBackoff    = 15 * time.Minute
)

// Delay is the wait before retry number attempt+1 of a push that failed
// with reason (attempt counts earlier retries, from 0). IdleTimeout and
// Shutdown are retried at once on a new connection.
func (b Backoff) Delay(reason string, attempt int) time.Duration {
	if reason == apns2.ReasonShutdown || reason == apns2.ReasonIdleTimeout {
		return 0
	}
	base := cmpOr(b.ServerBase, DefaultServerBackoff)
	if reason == apns2.ReasonTooManyRequests || reason == FCMQuotaExceeded {
		base = cmpOr(b.TokenBase, DefaultTokenBackoff)
	}
	limit := cmpOr(b.Max, DefaultMaxBackoff)
	ceiling := limit
	if attempt < 0 {
		attempt = 0
	}
	if attempt < 30 && base<<attempt > 0 && base<<attempt < limit {
		ceiling = base << attempt
	}
	return rand.N(ceiling + 1)
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// FCM errorCodes and statuses the sender acts on (docs/fcm.md, "Outcomes").
const (
	FCMInvalidArgument     = "INVALID_ARGUMENT"
	FCMThirdPartyAuthError = "THIRD_PARTY_AUTH_ERROR"
	FCMUnauthenticated     = "UNAUTHENTICATED"
	FCMSenderIDMismatch    = "SENDER_ID_MISMATCH"
	FCMPermissionDenied    = "PERMISSION_DENIED"
	FCMUnregistered        = "UNREGISTERED"
	FCMNotFound            = "NOT_FOUND"
	FCMQuotaExceeded       = "QUOTA_EXCEEDED"
	FCMInternal            = "INTERNAL"
	FCMUnavailable         = "UNAVAILABLE"
	FCMUnspecifiedError    = "UNSPECIFIED_ERROR"
)

// fcmCodeClass maps FCM's errorCodes (the FcmError detail) to a class.
var fcmCodeClass = map[string]Class{
	FCMThirdPartyAuthError: BadCredentials,
	FCMSenderIDMismatch:    DeadToken,
	FCMUnregistered:        DeadToken,
	FCMQuotaExceeded:       Retry,
	FCMInternal:            Retry,
	FCMUnavailable:         Retry,
}

// KnownFCMReason reports whether reason (an errorCode or a status) is one
// FCM documents; others are treated as transient and logged with the
// response body.
func KnownFCMReason(reason string) bool {
	switch reason {
	case FCMInvalidArgument, FCMUnauthenticated, FCMPermissionDenied, FCMNotFound:
		return true
	}
	_, ok := fcmCodeClass[reason]
	return ok
}

// ClassifyFCM maps an FCM response to a Class: the FcmError errorCode
// decides, the status (and HTTP code) when there is none. An
// INVALID_ARGUMENT whose message is about the registration token is a dead
// token; any other is a bad message. 401 UNAUTHENTICATED (the access
// token) is BadCredentials here: Send refreshes and resends once before it
// reports it. Anything unknown is Retry.
func ClassifyFCM(status int, errorCode, statusText, message string) Class {
	if status == http.StatusOK {
		return Delivered
	}
	if errorCode == FCMInvalidArgument || (errorCode == "" && statusText == FCMInvalidArgument) || (errorCode == "" && statusText == "" && status == http.StatusBadRequest) {
		if strings.Contains(strings.ToLower(message), "registration token") {
			return DeadToken
		}
		return BadMessage
	}
	if c, ok := fcmCodeClass[errorCode]; ok {
		return c
	}
	switch {
	case status == http.StatusUnauthorized, status == http.StatusForbidden, status == http.StatusNotFound:
		// UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND (wrong project):
		// credentials or configuration.
		return BadCredentials
	case status == http.StatusBadRequest:
		return BadMessage
	default:
		return Retry
	}
}
