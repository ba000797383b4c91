package server

import (
	"context"
	"math"
	"math/bits"
	"net"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/log"
	"strand/internal/protocol"
	"strand/internal/replica"
)

// Zero-copy Fetch. On a connection whose bytes go straight to a TCP socket
// (PLAINTEXT and SASL_PLAINTEXT: no TLS record layer in the way) a fetch
// reads each partition's record bytes with log.ReadFile, which also says
// where they lie in the segment file, and registers them with the
// connection's sendFiles under the response. The response stays an ordinary
// *kmsg.FetchResponse holding those (CRC-checked) bytes, so fetch sessions,
// quotas, authorization and metrics see it as before. The connection's
// writer encodes it with protocol.AppendFetchResponse, leaving out the
// registered record sets, and sends each with sendfile(2) from its file
// (log.FileRange.SendTo), or from memory when the file was truncated
// meanwhile. A record set something replaced (a throttled fetch's, cleared)
// is simply not found and is encoded as it is. On TLS connections, and for
// read_committed fetches, the response is encoded and copied as before.
//
// The read buffers are pooled by size class and given back once the
// response is written (or dropped: a long poll's earlier passes, a
// connection that closed).

// sendFiles holds, per response not yet written, the record sets read for
// it with their file ranges. One per zero-copy connection: the runner adds,
// the writer takes.
type sendFiles struct {
	mu     sync.Mutex // guards byResp, stubLen
	byResp map[*kmsg.FetchResponse][]fileRead
	// stubLen is the size each registered stub stands for, by its address.
	stubLen map[*byte]int
}

// fileRead is one partition's record bytes and where they lie on disk.
// With fetch.verify.crc=false the bytes are not read: data is nil and the
// response holds stub, a placeholder standing for them, instead.
type fileRead struct {
	data []byte
	fr   log.FileRange
	buf  *[]byte // pooled buffer holding data; nil if not pooled
	stub []byte
}

// records returns what the response's RecordBatches holds for r.
func (r fileRead) records() []byte {
	if r.stub != nil {
		return r.stub
	}
	return r.data
}

// newStub returns a placeholder record set: never sent (the writer sends
// the file range in its place), and not a record batch, so that a client
// that ever received one would fail to decode it rather than misread it.
func newStub() []byte { return []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0} }

// zeroCopyStats counts registered record set bytes written, from files
// (sendfile) and from memory (a file truncated since the read), for tests
// and benchmarks.
var zeroCopyStats struct{ fromFile, fromMemory atomic.Int64 }

// zeroCopyOff, set by benchmarks only, makes every connection copy, as
// before zero-copy fetches, for same-run comparisons.
var zeroCopyOff atomic.Bool

type sendFilesKey struct{}

// withSendFiles gives fetches on ctx the connection's sendFiles.
func withSendFiles(ctx context.Context, f *sendFiles) context.Context {
	return context.WithValue(ctx, sendFilesKey{}, f)
}

// sendFilesOf returns ctx's sendFiles, nil when the connection copies.
func sendFilesOf(ctx context.Context) *sendFiles {
	f, _ := ctx.Value(sendFilesKey{}).(*sendFiles)
	return f
}

// zeroCopyConn returns the TCP socket a connection's bytes are written to
// unchanged, or false when something (TLS) transforms them.
func zeroCopyConn(c net.Conn) (*net.TCPConn, bool) {
	if zeroCopyOff.Load() {
		return nil, false
	}
	if sc, ok := c.(*secConn); ok {
		if sc.tls != nil {
			return nil, false
		}
		c = sc.Conn
	}
	tc, ok := c.(*net.TCPConn)
	return tc, ok
}

// add registers a record set read for resp.
func (f *sendFiles) add(resp *kmsg.FetchResponse, r fileRead) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byResp == nil {
		f.byResp, f.stubLen = map[*kmsg.FetchResponse][]fileRead{}, map[*byte]int{}
	}
	f.byResp[resp] = append(f.byResp[resp], r)
	if r.stub != nil {
		f.stubLen[unsafe.SliceData(r.stub)] = r.fr.Len()
	}
}

// take removes and returns resp's record sets.
func (f *sendFiles) take(resp *kmsg.FetchResponse) []fileRead {
	f.mu.Lock()
	defer f.mu.Unlock()
	rs := f.byResp[resp]
	delete(f.byResp, resp)
	for _, r := range rs {
		if r.stub != nil {
			delete(f.stubLen, unsafe.SliceData(r.stub))
		}
	}
	return rs
}

// drop releases resp's record sets (a response that is not sent). f may
// be nil.
func (f *sendFiles) drop(resp *kmsg.FetchResponse) {
	if f != nil {
		releaseReads(f.take(resp))
	}
}

// reader returns the read function of fetchOnce for p that reads with
// log.ReadFile and registers what it read under resp: p.Read's bounds (up
// to the high watermark, nothing to read at it) for a consumer, p.ReadReplica's
// (up to the log end offset) for a follower.
//
// With verify false (fetch.verify.crc=false) the bytes are not read
// (log.ReadFileRange): the response gets a stub standing for them.
func (f *sendFiles) reader(resp *kmsg.FetchResponse, p *replica.Partition, follower, verify bool) func(int64, int, bool) ([]byte, error) {
	return func(offset int64, maxBytes int, minOne bool) ([]byte, error) {
		bound := int64(math.MaxInt64)
		if follower {
			if offset == p.LogEndOffset() {
				return nil, nil // caught up
			}
		} else if bound = p.HighWatermark(); offset == bound {
			return nil, nil // caught up: no disk read
		}
		if !verify {
			fr, err := p.Log().ReadFileRange(offset, maxBytes, bound, minOne)
			if err != nil || fr.Len() == 0 {
				return nil, err
			}
			r := fileRead{fr: fr, stub: newStub()}
			f.add(resp, r)
			return r.stub, nil
		}
		var buf *[]byte
		alloc := func(n int) []byte {
			buf = getReadBuf(n)
			return *buf
		}
		data, fr, err := p.Log().ReadFile(offset, maxBytes, bound, minOne, alloc)
		if err != nil || len(data) == 0 || !fr.HasFile() {
			if buf != nil {
				putReadBuf(buf)
			}
			if err != nil || len(data) == 0 {
				return nil, err
			}
			return append([]byte(nil), data...), nil
		}
		f.add(resp, fileRead{data: data, fr: fr, buf: buf})
		return data, nil
	}
}

// releaseReads gives the reads' buffers and descriptors back; their bytes
// must no longer be referenced.
func releaseReads(rs []fileRead) {
	for i := range rs {
		if rs[i].buf != nil {
			putReadBuf(rs[i].buf)
		}
		rs[i].fr.Close()
		rs[i] = fileRead{}
	}
}

// recordsLen is the size of a record set of a response on ctx: a stub's
// file range's, else its own. Quotas and MinBytes count with it.
func recordsLen(ctx context.Context, resp *kmsg.FetchResponse, b []byte) int {
	return sendFilesOf(ctx).recordsLen(resp, b)
}

// recordsLen is recordsLen for f (nil: no stubs). Stubs are unique
// allocations, so their address says which one b is.
func (f *sendFiles) recordsLen(resp *kmsg.FetchResponse, b []byte) int {
	if f == nil || len(b) == 0 {
		return len(b)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.stubLen[unsafe.SliceData(b)]; ok {
		return n
	}
	return len(b)
}

// fileParts is the writer's view of one response's registered reads.
type fileParts map[*byte]fileRead

// parts indexes reads by their bytes' address.
func partsOf(rs []fileRead) fileParts {
	if len(rs) == 0 {
		return nil
	}
	m := make(fileParts, len(rs))
	for _, r := range rs {
		if b := r.records(); len(b) > 0 {
			m[unsafe.SliceData(b)] = r
		}
	}
	return m
}

// external reports whether a response's record set is a registered read
// (the same bytes, not a replacement), to be sent from its file, and the
// size of what it stands for.
func (m fileParts) external(b []byte) (int, bool) {
	r, ok := m[unsafe.SliceData(b)]
	if !ok || len(r.records()) != len(b) {
		return 0, false
	}
	return r.fr.Len(), true
}

// lookup returns the read a part of the encoded response stands for.
func (m fileParts) lookup(p protocol.Part) fileRead {
	return m[unsafe.SliceData(p.Records)]
}

// Read buffers, pooled by power-of-two size class from 4 KiB to 8 MiB;
// larger reads are allocated.
const (
	minReadClass = 12
	maxReadClass = 23
)

var readBufPools [maxReadClass - minReadClass + 1]sync.Pool

// readBufClass returns the size class holding n bytes, or -1.
func readBufClass(n int) int {
	c := max(bits.Len(uint(max(n, 1)-1)), minReadClass)
	if c > maxReadClass {
		return -1
	}
	return c - minReadClass
}

// getReadBuf returns a buffer of at least n bytes, pooled unless too large.
func getReadBuf(n int) *[]byte {
	c := readBufClass(n)
	if c < 0 {
		b := make([]byte, n)
		return &b
	}
	if b, ok := readBufPools[c].Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 1<<(c+minReadClass))
	return &b
}

// putReadBuf gives a buffer from getReadBuf back.
func putReadBuf(b *[]byte) {
	n := cap(*b)
	if c := readBufClass(n); c >= 0 && n == 1<<(c+minReadClass) {
		*b = (*b)[:n]
		readBufPools[c].Put(b)
	}
}
