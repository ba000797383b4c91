package protocol

import (
	"math/bits"
	"sync"
)

// Frame bodies come from pools of size classes from 4 KiB to 16 MiB, four
// per power of two (so a body wastes at most a quarter of its size, and
// request memory, queued.max.request.bytes, stays close to what is
// counted); larger ones are allocated and left to the garbage collector. A
// body handed back with ReleaseBody is reused by a later ReadBody: a broker
// under produce load then allocates, clears and collects about nothing per
// request (a produce request's body is its records, often a megabyte).
const (
	minPooledShift = 12 // 4 KiB
	maxPooledShift = 24 // 16 MiB
)

// bodyPools[i] holds *[]byte whose capacity is class i's size.
var bodyPools [(maxPooledShift-minPooledShift)*4 + 1]sync.Pool

// sizeClass returns the pool index and size of the smallest class holding
// n bytes, or -1 if n is too large to pool.
func sizeClass(n int) (idx, size int) {
	if n <= 1<<minPooledShift {
		return 0, 1 << minPooledShift
	}
	s := bits.Len(uint(n-1)) - 1 // 1<<s < n <= 1<<(s+1)
	if s+1 > maxPooledShift {
		return -1, 0
	}
	step := 1 << (s - 2)
	j := (n - 1<<s + step - 1) / step // 1..4
	return (s-minPooledShift)*4 + j, 1<<s + j*step
}

// getBody returns a slice of length n, from a pool when n is poolable. Its
// content is undefined: the caller overwrites all of it.
func getBody(n int) []byte {
	c, size := sizeClass(n)
	if c < 0 {
		return make([]byte, n)
	}
	if p, ok := bodyPools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, size)
}

// ReleaseBody hands back a body returned by ReadBody (or ReadFrame) for
// reuse. The caller must be sure nothing refers to it or to any slice of
// it any more (a request decoded from it aliases its byte fields, such as
// a produce request's records); using it after the release is a data race.
func ReleaseBody(b []byte) {
	c, size := sizeClass(cap(b))
	if c < 0 || cap(b) != size {
		return // not one of ours
	}
	b = b[:0]
	bodyPools[c].Put(&b)
}
