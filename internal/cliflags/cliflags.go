// Package cliflags holds command-line flags shared by the client-side tools
// (strand bench, strand verify): where the cluster is and the shape of the
// topic the tool creates.
package cliflags

import (
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Topic is the --brokers, --partitions and --replication-factor flags.
type Topic struct {
	brokers    *string
	partitions *partitionList
	rf         *int
}

// partitionList is the value of --partitions: one count, or with a sweep a
// comma-separated list of counts. Each is checked by Values.
type partitionList struct {
	counts []int64
	sweep  bool // a list is allowed
}

func (l *partitionList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(l.counts))
	for i, c := range l.counts {
		s[i] = strconv.FormatInt(c, 10)
	}
	return strings.Join(s, ",")
}

func (l *partitionList) Set(v string) error {
	var counts []int64
	for f := range strings.SplitSeq(v, ",") {
		c, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil {
			return fmt.Errorf("partition count %q: %w", f, err)
		}
		counts = append(counts, c)
	}
	if len(counts) > 1 && !l.sweep {
		return fmt.Errorf("one partition count expected, got %q", v)
	}
	l.counts = counts
	return nil
}

// Register adds the flags to fs with the given defaults.
func Register(fs *flag.FlagSet, brokers []string, partitions int32, rf int16) *Topic {
	return register(fs, brokers, partitions, rf, false, "partitions of a newly created topic")
}

// RegisterSweep is Register whose --partitions also takes a comma-separated
// list of counts (see Sweep).
func RegisterSweep(fs *flag.FlagSet, brokers []string, partitions int32, rf int16) *Topic {
	return register(fs, brokers, partitions, rf, true, "partitions of a newly created topic; a comma-separated list (1,100,1000) runs once per count")
}

func register(fs *flag.FlagSet, brokers []string, partitions int32, rf int16, sweep bool, usage string) *Topic {
	t := &Topic{
		brokers:    fs.String("brokers", strings.Join(brokers, ","), "comma-separated seed brokers"),
		partitions: &partitionList{counts: []int64{int64(partitions)}, sweep: sweep},
	}
	fs.Var(t.partitions, "partitions", usage)
	t.rf = fs.Int("replication-factor", int(rf), "replication factor of a newly created topic")
	return t
}

// Values returns the parsed flags, checking the ranges the wire allows;
// partitions is the first count of a sweep.
func (t *Topic) Values() (brokers []string, partitions int32, rf int16, err error) {
	sweep, err := t.Sweep()
	if err != nil {
		return nil, 0, 0, err
	}
	if *t.rf < 1 || *t.rf > math.MaxInt16 {
		return nil, 0, 0, fmt.Errorf("--replication-factor %d out of range", *t.rf)
	}
	for b := range strings.SplitSeq(*t.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	return brokers, sweep[0], int16(*t.rf), nil
}

// Sweep returns every partition count given to --partitions, each checked.
func (t *Topic) Sweep() ([]int32, error) {
	out := make([]int32, 0, len(t.partitions.counts))
	for _, c := range t.partitions.counts {
		if c < 1 || c > math.MaxInt32 {
			return nil, fmt.Errorf("--partitions %d out of range", c)
		}
		out = append(out, int32(c))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--partitions: no count given")
	}
	return out, nil
}
