// Package cliflags holds command-line flags shared by the client-side tools
// (strand bench, strand verify): where the cluster is and the shape of the
// topic the tool creates.
package cliflags

import (
	"flag"
	"fmt"
	"math"
	"strings"
)

// Topic is the --brokers, --partitions and --replication-factor flags.
type Topic struct {
	brokers    *string
	partitions *int
	rf         *int
}

// Register adds the flags to fs with the given defaults.
func Register(fs *flag.FlagSet, brokers []string, partitions int32, rf int16) *Topic {
	return &Topic{
		brokers:    fs.String("brokers", strings.Join(brokers, ","), "comma-separated seed brokers"),
		partitions: fs.Int("partitions", int(partitions), "partitions of a newly created topic"),
		rf:         fs.Int("replication-factor", int(rf), "replication factor of a newly created topic"),
	}
}

// Values returns the parsed flags, checking the ranges the wire allows.
func (t *Topic) Values() (brokers []string, partitions int32, rf int16, err error) {
	if *t.partitions < 1 || *t.partitions > math.MaxInt32 {
		return nil, 0, 0, fmt.Errorf("--partitions %d out of range", *t.partitions)
	}
	if *t.rf < 1 || *t.rf > math.MaxInt16 {
		return nil, 0, 0, fmt.Errorf("--replication-factor %d out of range", *t.rf)
	}
	for b := range strings.SplitSeq(*t.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	return brokers, int32(*t.partitions), int16(*t.rf), nil
}
