// Package protocol is the one place that knows the Kafka wire format's framing:
// it reads size-prefixed request frames with a size limit, parses request headers
// (v1 and the flexible v2), decodes bodies with franz-go's kmsg, and encodes
// responses with the right header version. Everything above it deals in typed
// kmsg requests and responses only.
//
// Invariants: a frame is never read past its declared size, a declared size
// above the configured limit is rejected before any allocation, and decoding
// never panics on hostile bytes (covered by FuzzParseRequest).
package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// ErrFrameTooLarge is returned when a request declares a size above the limit
// (socket.request.max.bytes) or a negative size.
var ErrFrameTooLarge = errors.New("request frame too large")

// ErrUnsupported is returned (wrapped) for an API key or version the broker does
// not implement. The request header fields are still filled in so that the caller
// can answer ApiVersions with UNSUPPORTED_VERSION.
var ErrUnsupported = errors.New("unsupported api key or version")

// ErrMalformed is returned (wrapped) for a request whose header or body does not decode.
var ErrMalformed = errors.New("malformed request")

// Request is one decoded client request.
type Request struct {
	Key           int16
	Version       int16
	CorrelationID int32
	// ClientID is the header's client id; "" when null.
	ClientID string
	// Body is the decoded request; nil when err is ErrUnsupported.
	Body kmsg.Request
}

// ReadFrame reads one size-prefixed frame from r and returns its body.
// A size above max or below the smallest header (8 bytes) is rejected.
func ReadFrame(r io.Reader, max int32) ([]byte, error) {
	var sz [4]byte
	if _, err := io.ReadFull(r, sz[:]); err != nil {
		return nil, err
	}
	n, err := ParseSize(sz, max)
	if err != nil {
		return nil, err
	}
	return ReadBody(r, n, func(int) error { return nil })
}

// ParseRequest decodes a frame body (without its size prefix). For an API key or
// version outside Supported it returns the header fields with Body nil and an
// error wrapping ErrUnsupported.
func ParseRequest(frame []byte) (*Request, error) {
	if len(frame) < 8 {
		return nil, fmt.Errorf("%w: header needs 8 bytes, have %d", ErrMalformed, len(frame))
	}
	req := &Request{
		Key:           int16(binary.BigEndian.Uint16(frame[0:2])),
		Version:       int16(binary.BigEndian.Uint16(frame[2:4])),
		CorrelationID: int32(binary.BigEndian.Uint32(frame[4:8])),
	}
	rest := frame[8:]
	// Client id: a classic nullable string (int16 length), even in flexible headers.
	if len(rest) < 2 {
		return req, fmt.Errorf("%w: missing client id", ErrMalformed)
	}
	idLen := int16(binary.BigEndian.Uint16(rest[:2]))
	rest = rest[2:]
	if idLen > 0 {
		if int(idLen) > len(rest) {
			return req, fmt.Errorf("%w: client id length %d beyond frame", ErrMalformed, idLen)
		}
		req.ClientID = string(rest[:idLen])
		rest = rest[idLen:]
	} else if idLen < -1 {
		return req, fmt.Errorf("%w: client id length %d", ErrMalformed, idLen)
	}
	if !IsSupported(req.Key, req.Version) {
		return req, fmt.Errorf("%w: %s (key %d) v%d", ErrUnsupported, kmsg.NameForKey(req.Key), req.Key, req.Version)
	}
	body := kmsg.RequestForKey(req.Key)
	body.SetVersion(req.Version)
	if body.IsFlexible() {
		var err error
		if rest, err = skipTags(rest); err != nil {
			return req, fmt.Errorf("%w: header tags: %v", ErrMalformed, err)
		}
	}
	if err := readBody(body, rest); err != nil {
		return req, fmt.Errorf("%w: %s v%d body: %v", ErrMalformed, kmsg.NameForKey(req.Key), req.Version, err)
	}
	req.Body = body
	return req, nil
}

// readBody decodes b into body, turning any panic inside the decoder into an
// error (kmsg is careful, but a broker must never crash on client bytes).
func readBody(body kmsg.Request, b []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decoder panic: %v", r)
		}
	}()
	return body.ReadFrom(b)
}

// skipTags skips a flexible-version tagged-field section.
func skipTags(b []byte) ([]byte, error) {
	n, b, err := uvarint(b)
	if err != nil {
		return nil, err
	}
	for i := uint64(0); i < n; i++ {
		if _, b, err = uvarint(b); err != nil { // tag
			return nil, err
		}
		var sz uint64
		if sz, b, err = uvarint(b); err != nil {
			return nil, err
		}
		if sz > uint64(len(b)) {
			return nil, errors.New("tag size beyond frame")
		}
		b = b[sz:]
	}
	return b, nil
}

func uvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 || v > 1<<31 {
		return 0, nil, errors.New("bad uvarint")
	}
	return v, b[n:], nil
}

// AppendResponse appends a whole response frame (size, correlation id, header
// tags when flexible, body) to dst. ApiVersions responses always use header v0,
// as the protocol requires, so that clients can parse them before they know
// the broker's versions.
func AppendResponse(dst []byte, correlationID int32, resp kmsg.Response) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(correlationID))
	if resp.IsFlexible() && resp.Key() != 18 {
		dst = append(dst, 0) // no header tags
	}
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}
