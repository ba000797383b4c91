package replica

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// maxResponseBytes bounds a response frame a follower accepts (a fetch
// response is bounded by replica.fetch.response.max.bytes plus at least one
// batch per partition).
const maxResponseBytes = 256 << 20

// brokerConn is a follower's connection to another broker's client listener:
// Kafka request framing, one request at a time, bodies encoded and decoded
// with kmsg. Not safe for concurrent use.
type brokerConn struct {
	c     net.Conn
	r     *bufio.Reader
	fmt   *kmsg.RequestFormatter
	corr  int32
	buf   []byte      // request encoding buffer, reused
	rbuf  []byte      // response body buffer, reused (see roundTrip)
	close func() bool // stops the context watch; see dialBroker
}

// dialBroker connects to addr. The connection is closed when ctx ends, which
// unblocks a request in progress.
func dialBroker(ctx context.Context, dial DialFunc, addr, clientID string, timeout time.Duration) (*brokerConn, error) {
	if dial == nil {
		dial = dialTCP
	}
	c, err := dial(ctx, addr, timeout)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	bc := &brokerConn{c: c, r: bufio.NewReaderSize(c, 64<<10), fmt: kmsg.NewRequestFormatter(kmsg.FormatterClientID(clientID))}
	bc.close = context.AfterFunc(ctx, func() { c.Close() })
	return bc, nil
}

// Close closes the connection.
func (bc *brokerConn) Close() error {
	bc.close()
	return bc.c.Close()
}

// maxKeptResponseBuf is the largest response body buffer a connection keeps
// for the next response; a larger one is left to the garbage collector.
const maxKeptResponseBuf = 16 << 20

// roundTrip sends req and decodes the answer into resp (whose version is
// set to req's), failing if it takes longer than timeout.
//
// The response body is read into a buffer the connection reuses, and resp's
// byte slices (a fetch response's record sets) point into it: they are
// valid only until the next roundTrip on bc. Strings are copied by kmsg.
func (bc *brokerConn) roundTrip(req kmsg.Request, resp kmsg.Response, timeout time.Duration) error {
	if err := bc.c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	bc.corr++
	bc.buf = bc.fmt.AppendRequest(bc.buf[:0], req, bc.corr)
	if _, err := bc.c.Write(bc.buf); err != nil {
		return fmt.Errorf("send %s: %w", kmsg.NameForKey(req.Key()), err)
	}
	var size [4]byte
	if _, err := io.ReadFull(bc.r, size[:]); err != nil {
		return fmt.Errorf("read %s response: %w", kmsg.NameForKey(req.Key()), err)
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 4 || n > maxResponseBytes {
		return fmt.Errorf("%s response of %d bytes", kmsg.NameForKey(req.Key()), n)
	}
	if int(n) > cap(bc.rbuf) {
		bc.rbuf = make([]byte, n)
	}
	body := bc.rbuf[:n]
	if n > maxKeptResponseBuf {
		bc.rbuf = nil
	}
	if _, err := io.ReadFull(bc.r, body); err != nil {
		return fmt.Errorf("read %s response: %w", kmsg.NameForKey(req.Key()), err)
	}
	if corr := int32(binary.BigEndian.Uint32(body)); corr != bc.corr {
		return fmt.Errorf("%s response has correlation id %d, want %d", kmsg.NameForKey(req.Key()), corr, bc.corr)
	}
	body = body[4:]
	if req.IsFlexible() {
		var err error
		if body, err = skipTags(body); err != nil {
			return fmt.Errorf("%s response header: %w", kmsg.NameForKey(req.Key()), err)
		}
	}
	resp.SetVersion(req.GetVersion())
	if err := resp.ReadFrom(body); err != nil {
		return fmt.Errorf("decode %s response: %w", kmsg.NameForKey(req.Key()), err)
	}
	return nil
}

var errBadTags = errors.New("bad tagged fields")

// skipTags skips the tagged fields section at the start of b.
func skipTags(b []byte) ([]byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 {
		return nil, errBadTags
	}
	b = b[w:]
	for range n {
		if _, w = binary.Uvarint(b); w <= 0 {
			return nil, errBadTags
		}
		b = b[w:]
		size, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < size {
			return nil, errBadTags
		}
		b = b[w+int(size):]
	}
	return b, nil
}
