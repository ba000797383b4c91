package testcluster

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// probe checks that addr accepts TCP connections and answers a Metadata
// request whose broker list contains nodeID at addr.
func probe(ctx context.Context, addr string, nodeID int32) error {
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(pctx, "tcp", addr)
	if err != nil {
		return err
	}
	conn.Close()

	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.DialTimeout(time.Second),
		kgo.RequestRetries(0),
		kgo.RetryTimeout(time.Second),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	md, err := kadm.NewClient(cl).BrokerMetadata(pctx)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	for _, b := range md.Brokers {
		if b.NodeID == nodeID {
			if got := net.JoinHostPort(b.Host, fmt.Sprint(b.Port)); got != addr {
				return fmt.Errorf("metadata lists node %d at %s, want %s", nodeID, got, addr)
			}
			return nil
		}
	}
	return fmt.Errorf("metadata brokers %v do not include node %d", md.Brokers, nodeID)
}
