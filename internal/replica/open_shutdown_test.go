package replica

import "testing"

// shutdownPartition closes a partition as the manager does at shutdown.
func shutdownPartition(b *testing.B, p *Partition) {
	if err := p.maybeSnapshot(true); err != nil {
		b.Fatal(err)
	}
	if err := p.log.Close(); err != nil {
		b.Fatal(err)
	}
}
