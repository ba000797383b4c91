package server

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/protocol"
	"strand/internal/security"
)

// authState is where a connection stands in SASL authentication.
type authState int

const (
	authDone      authState = iota // authenticated (or no SASL on this listener)
	authHandshake                  // SASL listener: waiting for SaslHandshake
	authExchange                   // SaslHandshake v1 done: SaslAuthenticate requests carry the exchange
	authRaw                        // SaslHandshake v0 done: the exchange comes as raw size-prefixed tokens
)

// saslAuthTimeout is how long a connection to a SASL listener may take to
// authenticate before it is closed (a variable for tests).
var saslAuthTimeout = 30 * time.Second

// maxSASLFrame bounds a frame before authentication (Kafka's
// sasl.server.max.receive.size), so an unauthenticated client cannot make
// the broker allocate socket.request.max.bytes.
const maxSASLFrame = 512 << 10

// connAuth is one connection's authentication state. It is used only by
// the connection's reader goroutine; sess.Principal is written only before
// the first authenticated request is dispatched (re-authentication must
// keep the principal), so handlers may read the session without locks.
//
// Invariant (DESIGN.md 10): on a SASL listener, until authentication
// succeeds, only ApiVersions, SaslHandshake and SaslAuthenticate are
// answered; any other request closes the connection.
type connAuth struct {
	sec   *listenerSec // nil for connections not accepted by a listener (tests)
	sess  *security.Session
	state authState
	// deadline bounds the time to authenticate on a SASL listener (zero:
	// none, or authenticated); the connection's reads never wait past it.
	deadline time.Time

	mech    string
	ex      security.Exchange
	authed  bool      // authenticated at least once (a new handshake is a re-authentication)
	expires time.Time // session end (KIP-368); zero: never
}

// verdict tells serveConn what to do with a request after the gate.
type verdict int

const (
	pass        verdict = iota // dispatch normally
	answer                     // send resp, keep reading
	answerClose                // send resp, then close
	drop                       // close without answering
)

// errAuthTimeout closes a connection that did not authenticate in time.
var errAuthTimeout = errors.New("SASL authentication not complete in time")

// capDeadline returns t, or the authentication deadline when that is sooner.
func (a *connAuth) capDeadline(t time.Time) time.Time {
	if !a.deadline.IsZero() && a.deadline.Before(t) {
		return a.deadline
	}
	return t
}

// expired reports whether the authentication deadline has passed.
func (a *connAuth) expired() bool {
	return !a.deadline.IsZero() && !time.Now().Before(a.deadline)
}

// maxFrame is the largest frame the connection may send next.
func (a *connAuth) maxFrame(max int32) int32 {
	if a.state != authDone || !a.authed && a.sec != nil && a.sec.sasl() {
		return min(max, maxSASLFrame)
	}
	return max
}

// gate decides a request's fate before dispatch.
func (a *connAuth) gate(req *protocol.Request, logger *slog.Logger) (kmsg.Response, verdict) {
	if a.sec == nil || !a.sec.sasl() {
		switch req.Body.(type) {
		case *kmsg.SASLHandshakeRequest, *kmsg.SASLAuthenticateRequest:
			// Kafka answers ILLEGAL_SASL_STATE on a listener without SASL.
			return a.illegal(req, "this listener does not use SASL"), answerClose
		}
		return nil, pass
	}
	switch body := req.Body.(type) {
	case *kmsg.ApiVersionsRequest:
		return nil, pass
	case *kmsg.SASLHandshakeRequest:
		return a.handshake(body)
	case *kmsg.SASLAuthenticateRequest:
		return a.authenticate(body, logger)
	}
	if a.state == authDone && a.authed && (a.expires.IsZero() || time.Now().Before(a.expires)) {
		return nil, pass
	}
	if a.state == authDone && a.authed {
		logger.Info("closing connection: SASL session expired without re-authentication", "principal", a.sess.Principal.String())
	}
	return nil, drop
}

// illegal answers a SASL request with ILLEGAL_SASL_STATE, in the request's version.
func (a *connAuth) illegal(req *protocol.Request, msg string) kmsg.Response {
	resp := req.Body.ResponseKind()
	switch r := resp.(type) {
	case *kmsg.SASLHandshakeResponse:
		r.ErrorCode = kerr.IllegalSaslState.Code
	case *kmsg.SASLAuthenticateResponse:
		r.ErrorCode, r.ErrorMessage = kerr.IllegalSaslState.Code, &msg
	}
	return resp
}

func (a *connAuth) handshake(req *kmsg.SASLHandshakeRequest) (kmsg.Response, verdict) {
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	resp.SupportedMechanisms = a.sec.mechList
	// A handshake starts authentication, or (v1, after authenticating)
	// re-authentication (KIP-368).
	if a.state != authHandshake && !(a.state == authDone && a.authed && req.Version >= 1) {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		return resp, answerClose
	}
	mech, ok := a.sec.mechs[req.Mechanism]
	if !ok || a.authed && req.Mechanism != a.mech {
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		return resp, answerClose
	}
	a.mech, a.ex = req.Mechanism, mech.Start()
	a.state = authExchange
	if req.Version == 0 {
		a.state = authRaw
	}
	return resp, answer
}

// authenticate runs one step of the exchange carried by SaslAuthenticate.
func (a *connAuth) authenticate(req *kmsg.SASLAuthenticateRequest, logger *slog.Logger) (kmsg.Response, verdict) {
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	if a.state != authExchange {
		msg := "SaslAuthenticate before SaslHandshake"
		resp.ErrorCode, resp.ErrorMessage = kerr.IllegalSaslState.Code, &msg
		return resp, answerClose
	}
	out, done, err := a.step(req.SASLAuthBytes, logger)
	if err != nil {
		msg := "Authentication failed: " + clientReason(err)
		resp.ErrorCode, resp.ErrorMessage = kerr.SaslAuthenticationFailed.Code, &msg
		return resp, answerClose
	}
	resp.SASLAuthBytes = out
	if done && !a.expires.IsZero() {
		resp.SessionLifetimeMillis = max(time.Until(a.expires).Milliseconds(), 1)
	}
	return resp, answer
}

// clientReason is the part of an authentication error a client is told:
// the mechanism's reason without any credential.
func clientReason(err error) string {
	var ae *security.AuthError
	switch {
	case errors.As(err, &ae):
		return ae.Reason
	case errors.Is(err, security.ErrAuthentication):
		return strings.TrimPrefix(err.Error(), security.ErrAuthentication.Error()+": ")
	}
	return "invalid credentials"
}

// step feeds the exchange; on success it sets the principal and session
// expiry. A re-authentication must keep the principal.
func (a *connAuth) step(in []byte, logger *slog.Logger) ([]byte, bool, error) {
	out, done, err := a.ex.Next(in)
	if err != nil {
		if ok, dropped := a.sec.failLog.allow(time.Now()); ok {
			logger.Info("SASL authentication failed", "mechanism", a.mech, "listener", a.sec.name, "err", err,
				"detail", security.LogDetail(err), "suppressed_since_last", dropped)
		}
		return nil, false, err
	}
	if !done {
		return out, false, nil
	}
	p := a.ex.Principal()
	if a.authed && p != a.sess.Principal {
		err := fmt.Errorf("%w: re-authentication as a different principal", security.ErrAuthentication)
		logger.Info("SASL re-authentication refused", "principal", a.sess.Principal.String(), "new_principal", p.String())
		return nil, false, err
	}
	if !a.authed {
		a.sess.Principal = p
		logger.Debug("SASL authenticated", "mechanism", a.mech, "principal", p.String())
	}
	exp := a.ex.Expiry()
	if !a.authed {
		a.deadline = time.Time{} // authenticated: no more deadline (see startAuth)
	}
	a.authed, a.state, a.ex = true, authDone, nil
	a.expires = time.Time{}
	if a.sec.reauth > 0 {
		// KIP-368: the session ends after connections.max.reauth.ms, or
		// when the credential (a token) expires, whichever comes first.
		a.expires = time.Now().Add(a.sec.reauth)
		if !exp.IsZero() && exp.Before(a.expires) {
			a.expires = exp
		}
	}
	return out, true, nil
}

// rawStep reads one raw SASL token (SaslHandshake v0) from r and returns
// the raw reply to write: a size-prefixed token, or nil to close (failure).
func (a *connAuth) rawStep(r *bufio.Reader, logger *slog.Logger) ([]byte, bool, error) {
	var sz [4]byte
	if _, err := io.ReadFull(r, sz[:]); err != nil {
		return nil, false, err
	}
	n := binary.BigEndian.Uint32(sz[:])
	if n > maxSASLFrame {
		return nil, false, fmt.Errorf("SASL token of %d bytes", n)
	}
	in := make([]byte, n)
	if _, err := io.ReadFull(r, in); err != nil {
		return nil, false, err
	}
	out, done, err := a.step(in, logger)
	if err != nil {
		return nil, false, nil
	}
	if !done {
		a.state = authRaw
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(out))), out...), true, nil
}
