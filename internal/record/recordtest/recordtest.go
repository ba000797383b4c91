// Package recordtest builds hostile record batches for tests: decompression
// bombs for every codec and batches whose records are badly framed. Bombs
// are assembled from pieces compressed once (or, for zstd, from hand-written
// RLE blocks), so building one that decompresses to gigabytes takes
// milliseconds.
package recordtest

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/pierrec/lz4/v4"

	"strand/internal/record"
)

// zeroRun is the size of the zero run compressed once per codec.
const zeroRun = 1 << 20

var (
	zerosOnce sync.Once
	gzipZeros []byte // one gzip member of zeroRun zeros
	lz4Zeros  []byte // one lz4 frame of zeroRun zeros
)

func initZeros() {
	zeros := make([]byte, zeroRun)
	gzipZeros = gzipMember(zeros, gzip.BestCompression)
	var buf bytes.Buffer
	w := lz4.NewWriter(&buf)
	_ = w.Apply(lz4.CompressionLevelOption(lz4.Level9))
	_, _ = w.Write(zeros)
	_ = w.Close()
	lz4Zeros = buf.Bytes()
}

func gzipMember(data []byte, level int) []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, level)
	_, _ = w.Write(data)
	_ = w.Close()
	return buf.Bytes()
}

// appendGzipStored appends a gzip member holding data (< 64 KiB) in one
// stored deflate block, built by hand: much cheaper than a gzip writer.
func appendGzipStored(b, data []byte) []byte {
	b = append(b, 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff) // header, no name, unknown OS
	b = append(b, 1)                                     // final stored block
	b = binary.LittleEndian.AppendUint16(b, uint16(len(data)))
	b = binary.LittleEndian.AppendUint16(b, ^uint16(len(data)))
	b = append(b, data...)
	b = binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(data))
	return binary.LittleEndian.AppendUint32(b, uint32(len(data)))
}

func lz4Frame(data []byte) []byte {
	var buf bytes.Buffer
	w := lz4.NewWriter(&buf)
	_ = w.Apply(lz4.BlockSizeOption(lz4.Block64Kb))
	_, _ = w.Write(data)
	_ = w.Close()
	return buf.Bytes()
}

// recordHead encodes the start of record i of a bomb: its length, then the
// fields up to its value, whose valueLen bytes (zeros) follow, then a zero
// header count.
func recordHead(i int, valueLen int) []byte {
	var body []byte
	body = append(body, 0)                            // attributes
	body = binary.AppendVarint(body, 0)               // timestamp delta
	body = binary.AppendVarint(body, int64(i))        // offset delta
	body = binary.AppendVarint(body, -1)              // null key
	body = binary.AppendVarint(body, int64(valueLen)) // value length
	length := len(body) + valueLen + 1                // + zero header count
	return append(binary.AppendVarint(nil, int64(length)), body...)
}

// Bomb returns a batch of codec c (gzip, lz4 or zstd) holding records
// well-formed records, each with a value of about MiB zero bytes, so that
// it decompresses to about records MiB; its header (count, offsets,
// CRC) is consistent, so only a ceiling on the decompressed size stops it.
// The result is a fresh copy.
func Bomb(c record.Codec, records int) []byte {
	key := [2]int{int(c), records}
	if b, ok := bombs.Load(key); ok {
		return append([]byte(nil), b.([]byte)...)
	}
	b := buildBomb(c, records)
	bombs.Store(key, b)
	return append([]byte(nil), b...)
}

// bombs caches the bombs built, by codec and record count.
var bombs sync.Map

func buildBomb(c record.Codec, records int) []byte {
	zerosOnce.Do(initZeros)
	var payload []byte
	switch c {
	case record.CodecGzip:
		for i := range records {
			payload = appendGzipStored(payload, recordHead(i, zeroRun-1))
			payload = append(payload, gzipZeros...) // value and header count
		}
	case record.CodecLZ4:
		for i := range records {
			payload = append(payload, lz4Frame(recordHead(i, zeroRun-1))...)
			payload = append(payload, lz4Zeros...)
		}
	case record.CodecZstd:
		payload = zstdFrameHeader()
		for i := range records {
			payload = appendZstdRaw(payload, recordHead(i, zeroRun-1), false)
			for n := 0; n < zeroRun; n += zstdBlock {
				payload = appendZstdRLE(payload, zstdBlock, n+zstdBlock >= zeroRun && i == records-1)
			}
		}
	default:
		panic("recordtest.Bomb: no bomb for codec " + c.String())
	}
	return Batch(c, records, payload)
}

// Batch wraps payload (already compressed with c) in a batch header that
// claims records records, dense offsets and a current timestamp.
func Batch(c record.Codec, records int, payload []byte) []byte {
	now := time.Now().UnixMilli()
	return record.BuildRaw(record.Header{
		Attributes: int16(c), LastOffsetDelta: int32(records - 1), NumRecords: int32(records),
		BaseTimestamp: now, MaxTimestamp: now, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
	}, payload)
}

// Compress compresses data with c the way clients do (snappy: a raw
// block); for building batches around hand-made record bytes.
func Compress(c record.Codec, data []byte) []byte {
	switch c {
	case record.CodecNone:
		return data
	case record.CodecGzip:
		return gzipMember(data, gzip.DefaultCompression)
	case record.CodecSnappy:
		return s2.EncodeSnappy(nil, data)
	case record.CodecLZ4:
		return lz4Frame(data)
	case record.CodecZstd:
		f := zstdFrameHeader()
		for len(data) > zstdBlock {
			f = appendZstdRaw(f, data[:zstdBlock], false)
			data = data[zstdBlock:]
		}
		return appendZstdRaw(f, data, true)
	}
	panic("recordtest.Compress: unknown codec")
}

// ZstdBomb returns a zstd payload of RLE blocks decompressing to size zero
// bytes (64 KiB of it decompress to 2 GiB): no valid record at all.
func ZstdBomb(size int) []byte {
	f := zstdFrameHeader()
	for n := 0; n < size; n += zstdBlock {
		f = appendZstdRLE(f, zstdBlock, n+zstdBlock >= size)
	}
	return f
}

// zstdBlock is the largest zstd block (128 KiB).
const zstdBlock = 128 << 10

// zstdFrameHeader starts a zstd frame without content size or checksum,
// with an 8 MiB window.
func zstdFrameHeader() []byte {
	return []byte{0x28, 0xB5, 0x2F, 0xFD, 0x00, (23 - 10) << 3}
}

func zstdBlockHeader(b []byte, size int, typ byte, last bool) []byte {
	h := uint32(size)<<3 | uint32(typ)<<1
	if last {
		h |= 1
	}
	return append(b, byte(h), byte(h>>8), byte(h>>16))
}

func appendZstdRaw(b, data []byte, last bool) []byte {
	return append(zstdBlockHeader(b, len(data), 0, last), data...)
}

func appendZstdRLE(b []byte, size int, last bool) []byte {
	return append(zstdBlockHeader(b, size, 1, last), 0)
}

// Reseal recomputes the CRC of a batch whose header was edited in a test.
func Reseal(b []byte) []byte {
	h, _ := record.ParseHeader(b)
	return record.BuildRaw(h, b[record.HeaderSize:])
}
