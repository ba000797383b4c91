package record

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Pools of the streaming decoders CheckProduce uses, so that validating a
// compressed batch allocates no codec state: a gzip reader (32 KiB window),
// an lz4 reader (its block buffers come from lz4's own pools), a zstd
// decoder in synchronous mode (concurrency 1: no goroutines, safe to drop),
// a read buffer and snappy output buffers.
var (
	bufReaders   = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}
	gzipReaders  sync.Pool // *gzip.Reader
	lz4Readers   = sync.Pool{New: func() any { return lz4.NewReader(nil) }}
	zstdDecoders sync.Pool // *zstd.Decoder
	snappyBufs   sync.Pool // *[]byte
)

// zstdMinWindow is the zstd window CheckProduce always accepts, even with a
// lower ceiling: the windows producers use (zstd level 3 uses 2 MiB, level
// 19 8 MiB) must decode whatever the batch's size.
const zstdMinWindow = 8 << 20

// snappyMaxRatio bounds how much a snappy block can expand: the densest
// snappy element is a 3-byte copy of 64 bytes. A block claiming more is not
// snappy (s2's extensions, or a bomb) and is refused before any allocation.
const snappyMaxRatio = 22

// openScanner returns a scanner over the records of payload compressed with
// c, and a function that returns the decoders to their pools. Errors (an
// unknown codec, a bad stream header) wrap ErrCorrupt, or ErrInvalid for a
// snappy block longer than limit.
func openScanner(c Codec, payload []byte, limit int64) (*scanner, func(), error) {
	s := &scanner{codec: c, limit: limit, end: math.MaxInt64}
	switch {
	case c == CodecNone:
		s.buf = payload
		return s, func() {}, nil
	case c == CodecSnappy && !bytes.HasPrefix(payload, xerialMagic):
		buf, err := snappyDecode(payload, limit)
		if err != nil {
			return nil, nil, s.fail(Header{}, -1, streamError{err})
		}
		s.buf = *buf
		return s, func() { snappyBufs.Put(buf) }, nil
	}
	src, release, err := openStream(c, payload, limit)
	if err != nil {
		return nil, nil, s.fail(Header{}, -1, streamError{err})
	}
	br := bufReaders.Get().(*bufio.Reader)
	br.Reset(src)
	s.br = br
	return s, func() {
		br.Reset(nil)
		bufReaders.Put(br)
		release()
	}, nil
}

// errUnknownCodec is the error of a codec id Kafka does not define.
var errUnknownCodec = errors.New("unknown compression codec")

// openStream returns a pooled decompressing reader over payload for a
// streamed codec (gzip, xerial-framed snappy, lz4, zstd) and the function
// that returns it to its pool. limit bounds the zstd window (at least
// zstdMinWindow) and each snappy block. Errors are the codec's own, or
// errUnknownCodec.
func openStream(c Codec, payload []byte, limit int64) (io.Reader, func(), error) {
	switch c {
	case CodecGzip:
		zr, err := gzipReader(payload)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { gzipReaders.Put(zr) }, nil
	case CodecSnappy:
		if len(payload) < xerialHeaderSize || !bytes.HasPrefix(payload, xerialMagic) {
			return nil, nil, errors.New("truncated xerial snappy header")
		}
		xr := &xerialReader{src: payload[xerialHeaderSize:], limit: limit}
		return xr, xr.release, nil
	case CodecLZ4:
		lr := lz4Readers.Get().(*lz4.Reader)
		lr.Reset(bytes.NewReader(payload))
		return lr, func() { lr.Reset(nil); lz4Readers.Put(lr) }, nil
	case CodecZstd:
		d, _ := zstdDecoders.Get().(*zstd.Decoder)
		window := uint64(max(limit, zstdMinWindow))
		var err error
		if d == nil {
			d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
			if err != nil {
				return nil, nil, fmt.Errorf("new decoder: %w", err)
			}
		}
		// A bytes.Reader, not a bytes.Buffer: the decoder would decode a
		// Buffer whole into memory.
		if err = d.ResetWithOptions(bytes.NewReader(payload), zstd.WithDecoderMaxMemory(window), zstd.WithDecoderMaxWindow(window)); err != nil {
			zstdDecoders.Put(d)
			return nil, nil, err
		}
		return d, func() { _ = d.Reset(nil); zstdDecoders.Put(d) }, nil
	}
	return nil, nil, fmt.Errorf("%w %d", errUnknownCodec, c)
}

// gzipReader returns a pooled gzip reader over payload (its header already
// read); the caller puts it back in gzipReaders.
func gzipReader(payload []byte) (*gzip.Reader, error) {
	in := bytes.NewReader(payload)
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	if zr == nil {
		return gzip.NewReader(in)
	}
	if err := zr.Reset(in); err != nil {
		gzipReaders.Put(zr)
		return nil, err
	}
	return zr, nil
}

// snappyDecode decodes one raw snappy block into a pooled buffer, refusing
// a block whose declared length exceeds limit (errOverLimit) or what snappy
// can encode in its size, before allocating.
func snappyDecode(block []byte, limit int64) (*[]byte, error) {
	n, err := s2.DecodedLen(block)
	if err != nil {
		return nil, err
	}
	if int64(n) > limit {
		return nil, errOverLimit
	}
	if n > snappyMaxRatio*len(block)+16 {
		return nil, fmt.Errorf("%d bytes claim to decode to %d", len(block), n)
	}
	buf, _ := snappyBufs.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	out, err := s2.Decode((*buf)[:cap(*buf)], block)
	if err != nil {
		snappyBufs.Put(buf)
		return nil, err
	}
	*buf = out
	return buf, nil
}

// xerialReader streams the blocks of an xerial-framed snappy payload (the
// Java client's SnappyOutputStream): length-prefixed raw snappy blocks.
type xerialReader struct {
	src   []byte  // the remaining framed blocks
	cur   []byte  // unread decoded bytes of the current block
	buf   *[]byte // pooled decode buffer, nil until the first block
	limit int64
}

func (x *xerialReader) Read(p []byte) (int, error) {
	for len(x.cur) == 0 {
		if len(x.src) == 0 {
			return 0, io.EOF
		}
		if len(x.src) < 4 {
			return 0, errors.New("truncated xerial snappy block length")
		}
		n := binary.BigEndian.Uint32(x.src)
		if uint64(n) > uint64(len(x.src)-4) {
			return 0, fmt.Errorf("xerial snappy block of %d bytes, only %d left", n, len(x.src)-4)
		}
		block := x.src[4 : 4+n]
		x.src = x.src[4+n:]
		if x.buf != nil {
			snappyBufs.Put(x.buf)
			x.buf = nil
		}
		buf, err := snappyDecode(block, x.limit)
		if err != nil {
			return 0, err
		}
		x.buf, x.cur = buf, *buf
	}
	n := copy(p, x.cur)
	x.cur = x.cur[n:]
	return n, nil
}

func (x *xerialReader) release() {
	if x.buf != nil {
		snappyBufs.Put(x.buf)
		x.buf = nil
	}
}
