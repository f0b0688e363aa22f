// Package push delivers push messages to Apple's APNs through
// github.com/sideshow/apns2 and classifies every outcome.
//
// A Message is the JSON body of one queue item (docs/message.md). Validate
// rejects, before anything is sent, every message that can never be
// delivered, with a *ValidationError naming the field. APNsPayload builds
// the body sent to Apple.
//
// Every APNs response maps to a Class (Classify): Delivered, DeadToken,
// Retry, BadMessage or BadCredentials, following the table in
// /work/shared/APNS.md §3. Backoff computes full-jitter retry delays.
package push
