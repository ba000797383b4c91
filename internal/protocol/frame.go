package protocol

import (
	"encoding/binary"
	"fmt"
	"io"
)

// ChunkSize is the granularity at which ReadBody allocates a frame body: a
// peer that declares a large frame but sends little of it holds at most what
// it sent plus one chunk.
const ChunkSize = 256 << 10

// ParseSize validates a frame's 4-byte size prefix: a size above max or
// below the smallest request header (8 bytes) is rejected before anything is
// allocated.
func ParseSize(prefix [4]byte, max int32) (int32, error) {
	n := int32(binary.BigEndian.Uint32(prefix[:]))
	if n < 0 || n > max {
		return 0, fmt.Errorf("%w: %d bytes (limit %d)", ErrFrameTooLarge, n, max)
	}
	if n < 8 {
		return 0, fmt.Errorf("%w: frame of %d bytes is shorter than a request header", ErrMalformed, n)
	}
	return n, nil
}

// ReadBody reads a frame body of n bytes (a size ParseSize accepted) from r.
// Memory is allocated only as bytes arrive, at most ChunkSize at a time, and
// reserve is called with each allocation's size before it is made (it may
// block, or fail to abandon the read). A body larger than one chunk is
// assembled into a single buffer once complete; that copy is not reserved
// again (the chunks it replaces go back to their pool once it is made).
// Buffers come from pools (bodypool.go): the caller may hand the body back
// with ReleaseBody once nothing refers to it.
func ReadBody(r io.Reader, n int32, reserve func(int) error) ([]byte, error) {
	if n <= ChunkSize {
		if err := reserve(int(n)); err != nil {
			return nil, err
		}
		buf := getBody(int(n))
		if _, err := io.ReadFull(r, buf); err != nil {
			ReleaseBody(buf)
			return nil, fmt.Errorf("reading %d-byte frame: %w", n, err)
		}
		return buf, nil
	}
	var chunks [][]byte
	defer func() {
		for _, c := range chunks {
			ReleaseBody(c)
		}
	}()
	for left := int(n); left > 0; {
		k := min(left, ChunkSize)
		if err := reserve(k); err != nil {
			return nil, err
		}
		c := getBody(k)
		chunks = append(chunks, c)
		if _, err := io.ReadFull(r, c); err != nil {
			return nil, fmt.Errorf("reading %d-byte frame at byte %d: %w", n, int(n)-left, err)
		}
		left -= k
	}
	buf := getBody(int(n))[:0]
	for _, c := range chunks {
		buf = append(buf, c...)
	}
	return buf, nil
}
