package producer

import (
	"crypto/md5"
	"encoding/binary"
	"slices"
	"strconv"
)

// ketamaHashesPerServer follows libketama: 40 MD5 digests per server, four
// 32-bit points from each, 160 points per server of equal weight.
const ketamaHashesPerServer = 40

type ringPoint struct {
	hash   uint32
	server int // index into Producer.servers
}

// ring is a ketama continuum over the servers' addresses. A point's
// position depends only on its server's address, so adding a server adds
// its points and takes over only the keys that now fall just before them:
// about 1/N of them.
type ring struct {
	points []ringPoint
	n      int
}

func newRing(addrs []string) *ring {
	r := &ring{n: len(addrs), points: make([]ringPoint, 0, len(addrs)*ketamaHashesPerServer*4)}
	for i, addr := range addrs {
		for j := range ketamaHashesPerServer {
			d := md5.Sum([]byte(addr + "-" + strconv.Itoa(j)))
			for k := range 4 {
				r.points = append(r.points, ringPoint{hash: binary.LittleEndian.Uint32(d[4*k:]), server: i})
			}
		}
	}
	// Ties (rare) are broken by address, so the ring does not depend on
	// the order the servers were listed in.
	slices.SortFunc(r.points, func(a, b ringPoint) int {
		if a.hash != b.hash {
			if a.hash < b.hash {
				return -1
			}
			return 1
		}
		switch {
		case addrs[a.server] < addrs[b.server]:
			return -1
		case addrs[a.server] > addrs[b.server]:
			return 1
		}
		return 0
	})
	return r
}

func ketamaHash(key string) uint32 {
	d := md5.Sum([]byte(key))
	return binary.LittleEndian.Uint32(d[:4])
}

// order returns the servers in the order key tries them: the owner of the
// first point at or after the key's hash, then each further distinct server
// met walking the ring clockwise. Every key of the same value gets the same
// order, so when the owner is down all of its items go to the same
// successor.
func (r *ring) order(key string, dst []int) []int {
	h := ketamaHash(key)
	start, _ := slices.BinarySearchFunc(r.points, h, func(p ringPoint, h uint32) int {
		switch {
		case p.hash < h:
			return -1
		case p.hash > h:
			return 1
		}
		return 0
	})
	seen := make([]bool, r.n)
	for i := 0; i < len(r.points) && len(dst) < r.n; i++ {
		p := r.points[(start+i)%len(r.points)]
		if !seen[p.server] {
			seen[p.server] = true
			dst = append(dst, p.server)
		}
	}
	return dst
}
