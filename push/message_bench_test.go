package push_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/kpush/kpush/push"
)

// BenchmarkParseMessage is what the worker spends reading one queue item:
// decoding, validating and building the APNs payload once.
func BenchmarkParseMessage(b *testing.B) {
	for _, tokens := range []int{1, 1000} {
		b.Run(fmt.Sprintf("tokens=%d", tokens), func(b *testing.B) {
			m := map[string]any{"id": "m1", "topic": "com.example.app", "alert": "hello"}
			var toks []string
			for i := range tokens {
				toks = append(toks, fmt.Sprintf("%064x", i))
			}
			m["tokens"] = toks
			raw, _ := json.Marshal(m)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := push.ParseMessage(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
