package verify

import (
	"bytes"
	"fmt"
	"strconv"
)

// Status is what the producer learned about one record.
type Status uint8

const (
	// Unknown: the producer gave up waiting before the record's promise
	// ran, so the record may or may not have been written.
	Unknown Status = iota
	// Acked: the promise ran without error (acks=all): the broker promised
	// the record is durable, so it must be read back exactly once.
	Acked
	// Failed: the promise ran with an error. The record may still have
	// been written (for example when a request timed out after the leader
	// appended it), so reading it back is allowed.
	Failed
)

// String returns "unknown", "acked" or "failed".
func (s Status) String() string {
	switch s {
	case Acked:
		return "acked"
	case Failed:
		return "failed"
	default:
		return "unknown"
	}
}

// Sent is everything one producer key sent: its records all went to
// Partition, the record with seq i has value Value(runID, Key, i) and
// Statuses[i] is what its promise said. Seqs are assigned in produce order,
// so they also give the order the partition must hold them in.
type Sent struct {
	Key       string
	Partition int32
	Statuses  []Status
}

// Value returns the record value the verifier produces for seq of key in run
// runID: "<runID>:<key>:<seq>". runID must not contain ':'.
func Value(runID, key string, seq int64) []byte {
	return fmt.Appendf(nil, "%s:%s:%d", runID, key, seq)
}

// Counts is the verdict on one run: what was produced and what reading every
// partition back found. Lost, Duplicated, Reordered, Misplaced and Unexpected
// are violations; everything else is information.
type Counts struct {
	Produced        int64 `json:"produced"`         // records handed to the producer
	Acknowledged    int64 `json:"acknowledged"`     // promise without error
	NotAcknowledged int64 `json:"not_acknowledged"` // Failed + Unknown
	Failed          int64 `json:"failed"`           // promise with an error
	Unknown         int64 `json:"unknown"`          // no promise before the producer gave up

	Read                  int64 `json:"read"`                   // records of this run read, every copy counted
	Lost                  int64 `json:"lost"`                   // acknowledged but never read
	Duplicated            int64 `json:"duplicated"`             // extra copies: a record read n > 1 times counts n-1
	Reordered             int64 `json:"reordered"`              // first reads whose seq is below an earlier read seq of the same key in the partition
	UnacknowledgedPresent int64 `json:"unacknowledged_present"` // read although not acknowledged (allowed)
	Misplaced             int64 `json:"misplaced"`              // read in a partition other than the one it was produced to
	Unexpected            int64 `json:"unexpected"`             // carry this run's id but were never produced (bad key, seq or format)
	Foreign               int64 `json:"other_runs_ignored"`     // records of other runs (or other producers), ignored
}

// Violations returns Lost + Duplicated + Reordered + Misplaced + Unexpected;
// a run passes when it is 0.
func (c Counts) Violations() int64 {
	return c.Lost + c.Duplicated + c.Reordered + c.Misplaced + c.Unexpected
}

// Checker matches records read back from the topic against what was sent.
//
// Feed it every record of every partition with Observe, each partition in
// offset order (partitions may interleave), then call Counts. The rules, per
// record of this run (value prefix "<runID>:"):
//
//   - read more than once: every copy after the first is Duplicated;
//   - otherwise, within its partition, its seq must be greater than every seq
//     of the same key read before it (seqs increase in produce order, and
//     with acks=all and an idempotent producer the log must keep that order;
//     gaps are fine, they are records that were not written), else it is
//     Reordered;
//   - read but not acknowledged: UnacknowledgedPresent (allowed);
//   - acknowledged but never read: Lost.
//
// A Checker is not safe for concurrent use.
type Checker struct {
	prefix []byte
	keys   map[string]*keyState
	c      Counts
}

// keyState is the checker's view of one Sent.
type keyState struct {
	sent  Sent
	reads []int32 // times each seq was read
	last  int64   // highest seq read so far in sent.Partition, -1 before any
}

// NewChecker returns a checker for run runID that sent sent. Keys must be
// unique.
func NewChecker(runID string, sent []Sent) (*Checker, error) {
	ch := &Checker{prefix: []byte(runID + ":"), keys: make(map[string]*keyState, len(sent))}
	for _, s := range sent {
		if _, dup := ch.keys[s.Key]; dup {
			return nil, fmt.Errorf("verify: key %q sent twice", s.Key)
		}
		ch.keys[s.Key] = &keyState{sent: s, reads: make([]int32, len(s.Statuses)), last: -1}
		for _, st := range s.Statuses {
			ch.c.Produced++
			switch st {
			case Acked:
				ch.c.Acknowledged++
			case Failed:
				ch.c.Failed++
			default:
				ch.c.Unknown++
			}
		}
	}
	ch.c.NotAcknowledged = ch.c.Failed + ch.c.Unknown
	return ch, nil
}

// Observe records that value was read from partition (the next record of
// that partition in offset order).
func (ch *Checker) Observe(partition int32, value []byte) {
	rest, ok := bytes.CutPrefix(value, ch.prefix)
	if !ok {
		ch.c.Foreign++
		return
	}
	ch.c.Read++
	i := bytes.LastIndexByte(rest, ':')
	if i < 0 {
		ch.c.Unexpected++
		return
	}
	k := ch.keys[string(rest[:i])]
	seq, err := strconv.ParseInt(string(rest[i+1:]), 10, 64)
	if k == nil || err != nil || seq < 0 || seq >= int64(len(k.reads)) {
		ch.c.Unexpected++
		return
	}
	k.reads[seq]++
	switch {
	case k.reads[seq] > 1:
		ch.c.Duplicated++
		return
	case k.sent.Statuses[seq] != Acked:
		ch.c.UnacknowledgedPresent++
	}
	if partition != k.sent.Partition {
		ch.c.Misplaced++
		return
	}
	if seq < k.last {
		ch.c.Reordered++
		return
	}
	k.last = seq
}

// Missing returns how many acknowledged records have not been read yet.
func (ch *Checker) Missing() int64 {
	var n int64
	for _, k := range ch.keys {
		for seq, st := range k.sent.Statuses {
			if st == Acked && k.reads[seq] == 0 {
				n++
			}
		}
	}
	return n
}

// Counts returns the verdict on everything observed so far: records not
// observed by now count as never read.
func (ch *Checker) Counts() Counts {
	c := ch.c
	c.Lost = ch.Missing()
	return c
}
