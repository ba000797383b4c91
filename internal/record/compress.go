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
	zstdDecOnce sync.Once
	zstdDec     *zstd.Decoder
	zstdDecErr  error

	zstdEncOnce sync.Once
	zstdEnc     *zstd.Encoder
	zstdEncErr  error
)

func zstdDecoder() (*zstd.Decoder, error) {
	zstdDecOnce.Do(func() {
		zstdDec, zstdDecErr = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(MaxDecompressedSize),
			zstd.WithDecoderMaxWindow(MaxDecompressedSize))
	})
	return zstdDec, zstdDecErr
}

func zstdEncoder() (*zstd.Encoder, error) {
	zstdEncOnce.Do(func() {
		zstdEnc, zstdEncErr = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	})
	return zstdEnc, zstdEncErr
}

// errTooLarge is wrapped into ErrInvalid by decompress.
var errTooLarge = fmt.Errorf("decompressed size exceeds %d bytes", MaxDecompressedSize)

// decompress returns the decompressed records blob. Errors wrap ErrInvalid:
// the caller only decompresses CRC-verified batches, so undecodable data is
// a content problem rather than storage corruption.
func decompress(c Codec, src []byte) ([]byte, error) {
	var out []byte
	var err error
	switch c {
	case CodecNone:
		return src, nil
	case CodecGzip:
		out, err = decompressGzip(src)
	case CodecSnappy:
		out, err = decompressSnappy(src)
	case CodecLZ4:
		out, err = readAllLimited(lz4.NewReader(bytes.NewReader(src)))
	case CodecZstd:
		var d *zstd.Decoder
		if d, err = zstdDecoder(); err == nil {
			out, err = d.DecodeAll(src, nil)
			if err == nil && len(out) > MaxDecompressedSize {
				err = errTooLarge
			}
		}
	default:
		return nil, fmt.Errorf("%w: unknown compression codec %d", ErrInvalid, c)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s decompression: %v", ErrInvalid, c, err)
	}
	return out, nil
}

func decompressGzip(src []byte) ([]byte, error) {
	r, err := gzip.NewReader(bytes.NewReader(src))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return readAllLimited(r)
}

// readAllLimited reads r to EOF, failing once more than MaxDecompressedSize
// bytes have been produced.
func readAllLimited(r io.Reader) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(r, MaxDecompressedSize+1))
	if err != nil {
		return nil, err
	}
	if len(out) > MaxDecompressedSize {
		return nil, errTooLarge
	}
	return out, nil
}

// decompressSnappy handles both raw snappy blocks and xerial framing.
func decompressSnappy(src []byte) ([]byte, error) {
	if !bytes.HasPrefix(src, xerialMagic) {
		return snappyBlock(nil, src)
	}
	if len(src) < xerialHeaderSize {
		return nil, errors.New("truncated xerial snappy header")
	}
	var out []byte
	for p := src[xerialHeaderSize:]; len(p) > 0; {
		if len(p) < 4 {
			return nil, errors.New("truncated xerial snappy chunk length")
		}
		n := binary.BigEndian.Uint32(p)
		p = p[4:]
		if uint64(n) > uint64(len(p)) {
			return nil, fmt.Errorf("xerial snappy chunk of %d bytes, only %d left", n, len(p))
		}
		var err error
		if out, err = snappyBlock(out, p[:n]); err != nil {
			return nil, err
		}
		p = p[n:]
	}
	return out, nil
}

// snappyBlock appends the decoding of one raw snappy block to dst.
func snappyBlock(dst, block []byte) ([]byte, error) {
	n, err := s2.DecodedLen(block)
	if err != nil {
		return nil, err
	}
	if n < 0 || len(dst)+n > MaxDecompressedSize {
		return nil, errTooLarge
	}
	dec, err := s2.Decode(nil, block)
	if err != nil {
		return nil, err
	}
	return append(dst, dec...), nil
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
