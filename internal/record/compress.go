package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// MaxDecompressedSize caps the decompressed size of one batch's records
// when it is decoded whole (Records, ForEach, Filter), so that a small
// hostile batch cannot make the broker allocate unbounded memory (a
// decompression bomb); larger payloads yield ErrInvalid. It is also the
// largest ceiling CheckProduce applies to produced batches
// (message.max.decompressed.bytes), so that every stored batch can be
// decoded whole.
const MaxDecompressedSize = 64 << 20

// xerialMagic starts a snappy payload framed by the xerial snappy-java
// SnappyOutputStream, which the Java client writes.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

const (
	xerialHeaderSize = 16 // magic + version int32 + compatible version int32
	xerialBlockSize  = 32 << 10
)

var (
	zstdEncOnce sync.Once
	zstdEnc     *zstd.Encoder
	zstdEncErr  error
)

func zstdEncoder() (*zstd.Encoder, error) {
	zstdEncOnce.Do(func() {
		zstdEnc, zstdEncErr = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	})
	return zstdEnc, zstdEncErr
}

// decompress returns the decompressed records blob, at most
// MaxDecompressedSize bytes. Errors wrap ErrInvalid: the caller only
// decompresses CRC-verified batches, so undecodable data is a content
// problem rather than storage corruption.
func decompress(c Codec, src []byte) ([]byte, error) {
	return decompressLimit(c, src, MaxDecompressedSize)
}

// decompressLimit is decompress with a ceiling of limit bytes, using the
// pooled decoders of CheckProduce.
func decompressLimit(c Codec, src []byte, limit int64) ([]byte, error) {
	var out []byte
	var err error
	switch {
	case c == CodecNone:
		return src, nil
	case c == CodecSnappy && !bytes.HasPrefix(src, xerialMagic):
		var buf *[]byte
		if buf, err = snappyDecode(src, limit); err == nil {
			out = append([]byte(nil), *buf...) // records alias it: not pooled
			snappyBufs.Put(buf)
		}
	default:
		var r io.Reader
		var release func()
		if r, release, err = openStream(c, src, limit); err == nil {
			out, err = readAllLimited(r, limit)
			release()
		}
	}
	switch {
	case errors.Is(err, errUnknownCodec):
		return nil, fmt.Errorf("%w: unknown compression codec %d", ErrInvalid, c)
	case errors.Is(err, errOverLimit):
		return nil, fmt.Errorf("%w: %s decompression: decompressed size exceeds %d bytes", ErrInvalid, c, limit)
	case err != nil:
		return nil, fmt.Errorf("%w: %s decompression: %v", ErrInvalid, c, err)
	}
	return out, nil
}

// readAllLimited reads r to EOF, failing with errOverLimit once more than
// limit bytes have been produced.
func readAllLimited(r io.Reader, limit int64) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(out)) > limit {
		return nil, errOverLimit
	}
	return out, nil
}

// compress compresses a records blob with codec c.
func compress(c Codec, src []byte) ([]byte, error) {
	switch c {
	case CodecNone:
		return src, nil
	case CodecGzip:
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		if _, err := w.Write(src); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case CodecSnappy:
		return compressXerial(src), nil
	case CodecLZ4:
		var buf bytes.Buffer
		w := lz4.NewWriter(&buf)
		if _, err := w.Write(src); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case CodecZstd:
		e, err := zstdEncoder()
		if err != nil {
			return nil, err
		}
		return e.EncodeAll(src, nil), nil
	}
	return nil, fmt.Errorf("%w: unknown compression codec %d", ErrInvalid, c)
}

// compressXerial writes snappy with the xerial framing used by the Java
// client: header, then length-prefixed raw snappy blocks.
func compressXerial(src []byte) []byte {
	out := make([]byte, 0, xerialHeaderSize+len(src)/2+64)
	out = append(out, xerialMagic...)
	out = binary.BigEndian.AppendUint32(out, 1) // version
	out = binary.BigEndian.AppendUint32(out, 1) // minimum compatible version
	for len(src) > 0 {
		chunk := src[:min(len(src), xerialBlockSize)]
		src = src[len(chunk):]
		enc := s2.EncodeSnappy(nil, chunk)
		out = binary.BigEndian.AppendUint32(out, uint32(len(enc)))
		out = append(out, enc...)
	}
	return out
}
