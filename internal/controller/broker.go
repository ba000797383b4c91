package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"strand/internal/metadata"
)

// brokerLoop registers this node's broker with the active controller and
// heartbeats; it re-registers (new epoch) when the controller no longer
// knows the current registration.
func (n *Node) brokerLoop() {
	defer n.wg.Done()
	interval := n.cfg.HeartbeatInterval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	for n.ctx.Err() == nil {
		epoch, err := n.registerSelf()
		if err != nil {
			if n.ctx.Err() == nil {
				n.logger.Warn("broker registration failed; retrying", "err", err)
				sleep(n.ctx, 500*time.Millisecond)
			}
			continue
		}
		n.brokerMu.Lock()
		n.brokerEpoch = epoch
		n.brokerMu.Unlock()
		n.logger.Info("registered broker", "epoch", epoch)
		for n.ctx.Err() == nil {
			sent := time.Now()
			resp, err := n.sendHeartbeat(n.ctx, epoch, false)
			switch {
			case errors.Is(err, metadata.ErrStaleBrokerEpoch), errors.Is(err, metadata.ErrUnknownBroker):
				n.logger.Warn("controller dropped this broker's registration; registering again", "epoch", epoch)
			case err != nil:
				if n.ctx.Err() == nil {
					n.logger.Warn("heartbeat failed", "err", err)
				}
			case !resp.Fenced:
				n.lastHeartbeat.Store(&sent)
				n.regOnce.Do(func() { close(n.registered) })
			}
			if errors.Is(err, metadata.ErrStaleBrokerEpoch) || errors.Is(err, metadata.ErrUnknownBroker) {
				break
			}
			sleep(n.ctx, interval)
		}
	}
}

func (n *Node) registerSelf() (int64, error) {
	b := *n.cfg.Broker
	b.ID = n.cfg.NodeID
	if n.mux != nil {
		b.RaftAddr = n.mux.addr.String()
	}
	var epoch int64
	err := n.call(n.ctx, "register", b, &epoch)
	return epoch, err
}

func (n *Node) sendHeartbeat(ctx context.Context, epoch int64, shutdown bool) (heartbeatResp, error) {
	ctx, cancel := context.WithTimeout(ctx, max(n.cfg.HeartbeatInterval, time.Second)*2)
	defer cancel()
	var resp heartbeatResp
	err := n.call(ctx, "heartbeat", heartbeatReq{ID: n.cfg.NodeID, Epoch: epoch, Shutdown: shutdown}, &resp)
	return resp, err
}

// LastHeartbeat returns when the latest heartbeat the active controller
// accepted (this broker unfenced) was sent; zero before the first. The
// controller counts a broker's session from when it receives a heartbeat,
// which is no earlier, so a broker that has not had one accepted for a
// session timeout may already be fenced (see replica.Manager.SetLease).
func (n *Node) LastHeartbeat() time.Time {
	if t := n.lastHeartbeat.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// WaitRegistered blocks until this node's broker is registered, unfenced and
// its image is caught up to the registration.
func (n *Node) WaitRegistered(ctx context.Context) error {
	select {
	case <-n.registered:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("broker registration: %w", ctx.Err())
	}
}

// ControlledShutdown asks the active controller to move leadership away from
// this broker and fence it, waiting until it leads nothing or ctx ends.
func (n *Node) ControlledShutdown(ctx context.Context) error {
	n.brokerMu.Lock()
	epoch := n.brokerEpoch
	n.brokerMu.Unlock()
	if epoch == 0 {
		return nil
	}
	for {
		resp, err := n.sendHeartbeat(ctx, epoch, true)
		if err == nil && resp.ShutdownReady {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("controlled shutdown: %w (last: %v)", ctx.Err(), err)
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
