package log

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"strand/internal/atomicfile"
	"strand/internal/record"
)

// The leader epoch cache (Kafka's LeaderEpochFileCache, KIP-101/KIP-279)
// maps each leader epoch found in the log to the first offset written in it.
// It answers OffsetForLeaderEpoch ("where does epoch E end?") so that a
// follower can truncate to the point where its log diverged from the
// leader's, and consumers can detect truncation (KIP-320).
//
// Invariants (while the log is open; guarded by Log.mu):
//   - entries are strictly increasing in both Epoch and StartOffset;
//   - every StartOffset lies in [log start offset, LEO]; an entry at the
//     LEO stands for an epoch without batches (AssignEpoch, or an epoch
//     whose batches were all deleted);
//   - the entry of every epoch that has a batch at or above the log start
//     offset is in leader-epoch-checkpoint when the append that created it
//     returns, and on disk before a flush reports that batch durable or a
//     recovery point passes it (epochsync.go). Entries the file has beyond
//     that (removed by truncation or retention) are dropped again when the
//     log is opened.
//
// On open the checkpoint is loaded and clipped to [log start, LEO]. If it is
// missing or fails to parse, it is rebuilt from the batch headers. After an
// unclean shutdown the entries of the segments that recovery rescanned are
// rebuilt from their headers, so a crash between a data write and the
// checkpoint write cannot leave an epoch out.

// epochCheckpointFile is the cache's file in the partition directory, in
// Kafka's format: a version line "0", a count line, then one
// "<epoch> <startOffset>" line per entry.
const epochCheckpointFile = "leader-epoch-checkpoint"

// maxEpochCheckpointBytes bounds how much of the checkpoint file is read; a
// larger file is treated as corrupt (and rebuilt).
const maxEpochCheckpointBytes = 1 << 20

// ErrBadEpochCheckpoint marks a leader-epoch-checkpoint file that does not
// parse or whose entries are not strictly increasing.
var ErrBadEpochCheckpoint = errors.New("bad leader epoch checkpoint")

// EpochEntry is one leader epoch and the first offset written in it.
type EpochEntry struct {
	Epoch       int32
	StartOffset int64
}

// epochCache is the in-memory cache. Its methods are pure list operations;
// persistence is done by Log. Guarded by Log.mu.
type epochCache struct {
	entries []EpochEntry
	// unsaved is set when entries changed without being written (AssignEpoch);
	// the next append writes the file.
	unsaved bool
}

// latest returns the last entry, if any.
func (c *epochCache) latest() (EpochEntry, bool) {
	if len(c.entries) == 0 {
		return EpochEntry{}, false
	}
	return c.entries[len(c.entries)-1], true
}

// assign records that epoch starts at start, with Kafka's semantics: a
// negative epoch or offset is ignored; the latest epoch again at an offset at
// or after its start changes nothing; a higher epoch is appended, first
// dropping entries starting at or after start (epochs that never got a
// batch). An epoch lower than the latest one, or the latest epoch at an
// earlier offset, breaks monotonicity: entries with epoch >= epoch or start
// >= start are dropped before adding it, so the cache describes the newest
// data. It reports whether the cache changed and the entries it dropped
// that had data (a non-trivial conflict worth a warning).
func (c *epochCache) assign(epoch int32, start int64) (changed bool, conflicts []EpochEntry) {
	if epoch < 0 || start < 0 {
		return false, nil
	}
	if last, ok := c.latest(); ok && epoch == last.Epoch && start >= last.StartOffset {
		return false, nil
	}
	for n := len(c.entries); n > 0; n-- {
		e := c.entries[n-1]
		if e.Epoch < epoch && e.StartOffset < start {
			break
		}
		if e.StartOffset != start {
			conflicts = append(conflicts, e)
		}
		c.entries = c.entries[:n-1]
	}
	c.entries = append(c.entries, EpochEntry{epoch, start})
	return true, conflicts
}

// truncateFromEnd drops the entries starting at or after end (suffix
// truncation of the log to end). It reports whether anything changed.
func (c *epochCache) truncateFromEnd(end int64) bool {
	n := len(c.entries)
	for n > 0 && c.entries[n-1].StartOffset >= end {
		n--
	}
	changed := n != len(c.entries)
	c.entries = c.entries[:n]
	return changed
}

// truncateFromStart adapts the cache to a log start offset of start: the
// entries starting at or below start are dropped, and the last of them is
// kept with its start moved to start (its epoch still covers the first
// remaining offsets). It reports whether anything changed.
func (c *epochCache) truncateFromStart(start int64) bool {
	i := 0
	for i < len(c.entries) && c.entries[i].StartOffset <= start {
		i++
	}
	if i == 0 || (i == 1 && c.entries[0].StartOffset == start) {
		return false
	}
	keep := EpochEntry{c.entries[i-1].Epoch, start}
	c.entries = append([]EpochEntry{keep}, c.entries[i:]...)
	return true
}

// clear empties the cache, reporting whether it held anything.
func (c *epochCache) clear() bool {
	changed := len(c.entries) > 0
	c.entries = nil
	return changed
}

// endOffsetFor implements OffsetForLeaderEpoch (Kafka's endOffsetFor) over
// a log whose end offset is leo:
//   - a negative (undefined) epoch, an epoch above the latest one, or an
//     empty cache: (-1, -1);
//   - the latest epoch: (epoch, leo);
//   - otherwise the largest cached epoch <= the requested one, and the start
//     offset of the first cached epoch above the requested one. If the
//     requested epoch is below every cached epoch (its data is gone), the
//     requested epoch itself is returned with the first entry's start
//     offset, as Kafka does since KIP-279.
func (c *epochCache) endOffsetFor(epoch int32, leo int64) (int32, int64) {
	last, ok := c.latest()
	if epoch < 0 || !ok || epoch > last.Epoch {
		return -1, -1
	}
	if epoch == last.Epoch {
		return epoch, leo
	}
	// The first entry with Epoch > epoch exists (the last one qualifies).
	i := 0
	for c.entries[i].Epoch <= epoch {
		i++
	}
	if i == 0 {
		return epoch, c.entries[0].StartOffset
	}
	return c.entries[i-1].Epoch, c.entries[i].StartOffset
}

// epochForOffset returns the epoch of the entry covering off: the last entry
// with StartOffset <= off, or -1 if there is none.
func (c *epochCache) epochForOffset(off int64) int32 {
	epoch := int32(-1)
	for _, e := range c.entries {
		if e.StartOffset > off {
			break
		}
		epoch = e.Epoch
	}
	return epoch
}

// encodeEpochCheckpoint renders entries in Kafka's checkpoint text format.
func encodeEpochCheckpoint(entries []EpochEntry) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "0\n%d\n", len(entries))
	for _, e := range entries {
		fmt.Fprintf(&b, "%d %d\n", e.Epoch, e.StartOffset)
	}
	return b.Bytes()
}

// parseEpochCheckpoint parses a checkpoint file. It accepts exactly Kafka's
// format (version 0, a count, that many "<epoch> <offset>" lines separated
// by white space, the final newline optional) with non-negative values
// strictly increasing in both epoch and offset. Anything else, including an
// empty file, yields an error wrapping ErrBadEpochCheckpoint: the caller
// rebuilds the cache from the log rather than guess.
func parseEpochCheckpoint(b []byte) ([]EpochEntry, error) {
	bad := func(format string, args ...any) ([]EpochEntry, error) {
		return nil, fmt.Errorf("%w: %s", ErrBadEpochCheckpoint, fmt.Sprintf(format, args...))
	}
	s := string(b)
	if s == "" {
		return bad("empty file")
	}
	s = strings.TrimSuffix(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) < 2 {
		return bad("missing count line")
	}
	if lines[0] != "0" {
		return bad("unsupported version %.20q", lines[0])
	}
	n, err := strconv.Atoi(lines[1])
	if err != nil || n < 0 {
		return bad("bad count %.20q", lines[1])
	}
	if n != len(lines)-2 {
		return bad("count %d, but %d entry lines", n, len(lines)-2)
	}
	entries := make([]EpochEntry, 0, n)
	for i, line := range lines[2:] {
		f := strings.Fields(line)
		if len(f) != 2 || strings.TrimSpace(line) != line {
			return bad("line %d: %.40q is not \"<epoch> <offset>\"", i+3, line)
		}
		epoch, err1 := strconv.ParseInt(f[0], 10, 32)
		off, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || epoch < 0 || off < 0 {
			return bad("line %d: bad numbers in %.40q", i+3, line)
		}
		e := EpochEntry{int32(epoch), off}
		if k := len(entries); k > 0 && (e.Epoch <= entries[k-1].Epoch || e.StartOffset <= entries[k-1].StartOffset) {
			return bad("line %d: entry %v does not follow %v", i+3, e, entries[k-1])
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// readEpochCheckpoint reads and parses the checkpoint in dir. A missing file
// yields an error wrapping os.ErrNotExist.
func readEpochCheckpoint(dir string) ([]EpochEntry, error) {
	f, err := os.Open(filepath.Join(dir, epochCheckpointFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEpochCheckpointBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxEpochCheckpointBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadEpochCheckpoint, maxEpochCheckpointBytes)
	}
	return parseEpochCheckpoint(b)
}

// writeEpochs atomically replaces the checkpoint file with the cache's
// entries. Caller holds mu.
func (l *Log) writeEpochs() error {
	if err := atomicfile.Write(filepath.Join(l.dir, epochCheckpointFile), encodeEpochCheckpoint(l.epochs.entries)); err != nil {
		return fmt.Errorf("leader epoch checkpoint: %w", err)
	}
	l.epochs.unsaved = false
	l.epochsUnsynced = false // fsynced with everything before it
	return nil
}

// epochsAppended records the epochs of appended batches (each batch's
// PartitionLeaderEpoch at its base offset) and writes the checkpoint, not
// yet durably (writeEpochsUnsynced), if the cache changed. A write failure
// is a sticky log failure, so the entry can never be missing from a file
// that a later clean shutdown vouches for. Caller holds mu.
func (l *Log) epochsAppended(hs []record.Header) error {
	changed := l.epochs.unsaved
	for _, h := range hs {
		c, conflicts := l.epochs.assign(h.PartitionLeaderEpoch, h.BaseOffset)
		changed = changed || c
		if len(conflicts) > 0 {
			l.logger.Warn("batch leader epoch is not monotonic; dropped conflicting epoch cache entries",
				"epoch", h.PartitionLeaderEpoch, "offset", h.BaseOffset, "dropped", conflicts)
		}
	}
	if !changed {
		return nil
	}
	if err := l.writeEpochsUnsynced(); err != nil { // the next flush syncs it (epochsync.go)
		return l.failWith(err)
	}
	return nil
}

// epochsTruncatedTo drops the entries at or above the new LEO after a
// suffix truncation (or all of them if clear). Failing to persist it is a
// sticky failure, like the recovery point after truncation. Caller holds mu.
func (l *Log) epochsTruncatedTo(to int64, clear bool) error {
	var changed bool
	if clear {
		changed = l.epochs.clear()
	} else {
		changed = l.epochs.truncateFromEnd(to)
	}
	if !changed {
		return nil
	}
	if err := l.writeEpochsUnsynced(); err != nil { // the next flush syncs it (epochsync.go)
		return l.failWith(err)
	}
	return nil
}

// epochsStartAt adapts the cache to a new log start offset. A stale file
// only holds extra entries below the log start, which loading clips, so a
// write failure is returned but not sticky. Caller holds mu.
func (l *Log) epochsStartAt(start int64) error {
	if !l.epochs.truncateFromStart(start) {
		return nil
	}
	return l.writeEpochs()
}

// loadEpochs initialises the cache during load, after recovery set logStart
// and LEO and before the recovery point is written. rescanFrom is the base
// offset of the first segment recovery rescanned (the LEO after a clean
// shutdown): entries from there on are rebuilt from the batch headers.
func (l *Log) loadEpochs(rescanFrom int64) error {
	entries, err := readEpochCheckpoint(l.dir)
	changed := false
	switch {
	case err == nil:
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrBadEpochCheckpoint):
		if !errors.Is(err, os.ErrNotExist) {
			l.logger.Warn("rebuilding leader epoch cache from the log", "reason", err)
		}
		entries, rescanFrom, changed = nil, 0, true
	default:
		return err
	}
	l.epochs = epochCache{entries: entries}
	if l.epochs.truncateFromEnd(rescanFrom) {
		changed = true
	}
	if rescanFrom < l.leo {
		if err := l.ScanHeaders(rescanFrom, func(h record.Header) error {
			if c, _ := l.epochs.assign(h.PartitionLeaderEpoch, h.BaseOffset); c {
				changed = true
			}
			return nil
		}); err != nil {
			// Serve what was found; the checkpoint is left as it was, so
			// the next open tries again.
			l.logger.Error("cannot scan the log to rebuild the leader epoch cache", "err", err)
			l.epochs.truncateFromEnd(l.leo)
			l.epochs.truncateFromStart(l.logStart)
			return nil
		}
	}
	if l.epochs.truncateFromEnd(l.leo) {
		changed = true
	}
	if l.epochs.truncateFromStart(l.logStart) {
		changed = true
	}
	if !changed || (errors.Is(err, os.ErrNotExist) && len(l.epochs.entries) == 0) {
		return nil // a log without epochs needs no file yet
	}
	return l.writeEpochs()
}

// EndOffsetForEpoch answers OffsetForLeaderEpoch for epoch from the leader
// epoch cache: the largest cached epoch <= epoch and the offset where it
// ends (the start of the next cached epoch, or the LEO for the latest
// epoch); (-1, -1) for an undefined (negative) epoch, an epoch above the
// latest one, or an empty cache. An epoch below the earliest cached one
// (its data deleted) yields (epoch, start of the earliest entry), as in
// Kafka since KIP-279.
func (l *Log) EndOffsetForEpoch(epoch int32) (leaderEpoch int32, endOffset int64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.epochs.endOffsetFor(epoch, l.leo)
}

// LatestEpoch returns the latest leader epoch in the cache, -1 if none.
func (l *Log) LatestEpoch() int32 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if e, ok := l.epochs.latest(); ok {
		return e.Epoch
	}
	return -1
}

// EpochForOffset returns the leader epoch of the batch holding off
// according to the cache (the latest entry starting at or below off), -1 if
// none.
func (l *Log) EpochForOffset(off int64) int32 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.epochs.epochForOffset(off)
}

// EpochEntries returns a copy of the cache's entries, oldest first.
func (l *Log) EpochEntries() []EpochEntry {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return append([]EpochEntry(nil), l.epochs.entries...)
}

// AssignEpoch records that leader epoch epoch starts at the current LEO, as
// a replica does when it becomes the partition's leader (Kafka's
// makeLeader), so that OffsetForLeaderEpoch answers for the new epoch before
// any batch is written in it. Only an epoch above the latest cached one is
// recorded (leader epochs only grow). The entry is kept in memory and
// written with the first batch appended after it: an epoch without data
// needs no durability (loading drops entries at the LEO, and the leader
// assigns again).
func (l *Log) AssignEpoch(epoch int32) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if last, ok := l.epochs.latest(); ok && epoch <= last.Epoch {
		if epoch < last.Epoch {
			l.logger.Warn("ignoring leader epoch below the latest one in the log", "epoch", epoch, "latest", last.Epoch)
		}
		return nil
	}
	if c, _ := l.epochs.assign(epoch, l.leo); c {
		l.epochs.unsaved = true
	}
	return nil
}
