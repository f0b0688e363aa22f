package producer

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

func ringOwners(r *ring, addrs []string, keys int) map[string]string {
	owners := make(map[string]string, keys)
	for k := range keys {
		key := fmt.Sprintf("user-%d", k)
		owners[key] = addrs[r.order(key, nil)[0]]
	}
	return owners
}

func TestRingAddServerMovesAboutOneNth(t *testing.T) {
	const keys = 20000
	for _, n := range []int{2, 3, 5, 9} {
		t.Run(fmt.Sprintf("%d+1", n), func(t *testing.T) {
			var addrs []string
			for i := range n + 1 {
				addrs = append(addrs, fmt.Sprintf("10.0.0.%d:22133", i+1))
			}
			before := ringOwners(newRing(addrs[:n]), addrs[:n], keys)
			after := ringOwners(newRing(addrs), addrs, keys)
			moved := 0
			for key, was := range before {
				now := after[key]
				if now == was {
					continue
				}
				moved++
				if now != addrs[n] {
					t.Fatalf("key %s moved from %s to %s, not to the new server %s", key, was, now, addrs[n])
				}
			}
			frac, want := float64(moved)/keys, 1/float64(n+1)
			if math.Abs(frac-want) > want*0.35 {
				t.Errorf("adding a server to %d moved %.3f of the keys, want about %.3f", n, frac, want)
			}
		})
	}
}

func TestRingBalance(t *testing.T) {
	addrs := []string{"127.0.0.1:22133", "127.0.0.1:22134", "127.0.0.1:22135"}
	counts := map[string]int{}
	const keys = 30000
	for _, owner := range ringOwners(newRing(addrs), addrs, keys) {
		counts[owner]++
	}
	for _, a := range addrs {
		// 160 points per server keep each share within ~15% of fair.
		if share := float64(counts[a]) / keys; math.Abs(share-1.0/3) > 0.05 {
			t.Errorf("%s owns %.3f of the keys, want about 0.333 (%v)", a, share, counts)
		}
	}
}

func TestRingOrderIndependentOfListing(t *testing.T) {
	a := []string{"h1:1", "h2:1", "h3:1", "h4:1"}
	b := []string{"h3:1", "h1:1", "h4:1", "h2:1"}
	ra, rb := newRing(a), newRing(b)
	for k := range 2000 {
		key := fmt.Sprint(k)
		var oa, ob []string
		for _, i := range ra.order(key, nil) {
			oa = append(oa, a[i])
		}
		for _, i := range rb.order(key, nil) {
			ob = append(ob, b[i])
		}
		if !slices.Equal(oa, ob) {
			t.Fatalf("key %s: order %v with one listing, %v with another", key, oa, ob)
		}
		sorted := slices.Clone(oa)
		slices.Sort(sorted)
		if !slices.Equal(slices.Compact(sorted), []string{"h1:1", "h2:1", "h3:1", "h4:1"}) {
			t.Fatalf("key %s: order %v is not every server once", key, oa)
		}
	}
}
