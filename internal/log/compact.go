package log

import (
	"bufio"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"strand/internal/record"
)

// Log compaction (cleanup.policy=compact), after Kafka's log cleaner.
//
// A pass works on the cleanable segments: the closed segments from the
// first one, stopping before the first segment that holds an offset at or
// above CompactOptions.CleanableEnd, holds a record newer than
// min.compaction.lag.ms, or has a corrupt region. The active segment is
// never touched. Segments ending at or below cleanedTo (persisted in
// cleanerCheckpointFile) were cleaned by an earlier pass ("clean"); the rest
// are "dirty".
//
//  1. Key map: the dirty segments are decoded and every key is mapped to its
//     highest offset. Keys are hashed (two 64-bit maphash sums with per-pass
//     random seeds: 128 bits, so a collision, which would drop the record of
//     another key as Kafka's MD5 map would, is practically impossible) and
//     the map is a plain Go map. log.cleaner.dedupe.buffer.size bounds it
//     through CompactOptions.MaxMapEntries, checked after each whole segment:
//     once reached, the pass ends its dirty range there (the next pass goes
//     on), so the map may exceed the bound by one segment's keys. The first
//     dirty segment is always mapped whole so that every pass progresses.
//  2. Every cleanable segment up to the end of the mapped range (clean and
//     dirty ones) is rewritten, adjacent segments grouped into one while the
//     sum of their sizes fits segment.bytes (and the offset range and index
//     capacity fit), keeping a record iff
//     - it has a key (keyless records are invalid in compacted topics;
//     appends reject them, see AppendAsLeader; older ones are dropped), and
//     - no record with the same key has a higher offset in the mapped range,
//     and
//     - it is not a tombstone (null value) that is due: a tombstone is dropped
//     when its batch lies entirely below the cleanedTo of the previous pass
//     (it survived at least one pass, so consumers could see it) and the
//     batch's max timestamp is older than now - delete.retention.ms. (Kafka
//     measures delete.retention.ms from when the segment was first cleaned;
//     this uses the record timestamps instead.)
//     Control batches and transactional batches are copied unchanged and
//     their keys are not mapped (so a transactional write never removes an
//     older value; aborted data and markers are not removed either).
//  3. Batches: a batch whose records are all kept is copied byte for byte;
//     one that loses some is rewritten with the same header (base offset,
//     lastOffsetDelta, timestamps, producer fields, leader epoch) and the
//     same codec (record.Filter), so retained records keep their offsets and
//     the batch still ends at its original last offset. A batch that loses
//     every record becomes an empty batch (record.EmptyBatch): consecutive
//     emptied batches of the same leader epoch are merged into one
//     anonymous empty batch covering their offsets, except that the last
//     batch of each producer in the cleaned range keeps its own empty batch
//     with its producer id, epoch and sequences (as Kafka does, so the
//     producer state rebuilt at open still knows the producer's last
//     sequence). So offsets stay dense batch to batch: readers, recovery,
//     follower appends and leader-epoch boundaries are unaffected, at the
//     cost of 61 bytes per run of removed batches. Clients skip empty
//     batches (KAFKA-5443).
//  4. Swap, per group: the new log and index files are written as
//     NNN.{log,index,timeindex}.cleaned and fsynced; then, under flushMu and
//     mu (like retention, so no reader or fsync uses an old segment while it
//     changes), after checking that the group's segments are unchanged
//     (retention or truncation running meanwhile aborts the group), the
//     indexes are renamed to .swap, then the log to .swap (the commit point),
//     the directory is fsynced, the old segments are closed and deleted,
//     and the .swap files are renamed to their final names. Open
//     (completeSwaps) finishes an interrupted swap: a NNN.log.swap is walked
//     (CRC-checked) to find its end offset, every segment with a base in
//     (NNN, end) is deleted, its .swap indexes are installed (or the stale
//     ones deleted to be rebuilt) and it is renamed to NNN.log. Without a
//     .log.swap, .swap and .cleaned files are strays and are removed, which
//     restores the old segments.
//  5. cleanedTo advances to the end of each dirty group that is swapped in
//     and is written to cleanerCheckpointFile. Truncation below it lowers it.

// cleanerCheckpointFile holds the offset below which the log went through a
// compaction pass (Kafka's cleaner-offset-checkpoint, per partition).
const cleanerCheckpointFile = "cleaner-offset.checkpoint"

// Suffixes of the files of a compaction in progress (see strayFile).
const (
	cleanedSuffix = ".cleaned"
	swapSuffix    = ".swap"
)

// CompactOptions control one compaction pass.
type CompactOptions struct {
	// CleanableEnd bounds the pass: only segments whose every offset is
	// below it are cleaned. Pass the high watermark (or last stable offset).
	CleanableEnd int64
	// Now is the time for min.compaction.lag.ms and delete.retention.ms;
	// zero means time.Now().
	Now time.Time
	// MaxMapEntries bounds the key map (see the comment at the top of
	// compact.go); 0 means unlimited.
	MaxMapEntries int
	// Cancel, when closed, abandons the pass between batches (ctx.Done()).
	Cancel <-chan struct{}
}

// CompactStats describes a compaction pass.
type CompactStats struct {
	FirstDirty, DirtyEnd int64 // offsets whose keys were mapped: [FirstDirty, DirtyEnd)
	Keys                 int   // distinct keys mapped
	SegmentsRead         int   // segments rewritten
	SegmentsWritten      int   // segments that replaced them (after grouping)
	BytesRead            int64
	BytesWritten         int64
	RecordsRead          int64
	RecordsKept          int64
	TombstonesDropped    int64
	KeylessDropped       int64
	EmptyBatches         int // record-less batches written
	// Aborted is set when retention or truncation changed the segments of
	// a group meanwhile: that group was left as it was and the pass ended.
	Aborted bool
	Elapsed time.Duration
}

// errCompactAborted ends a group whose segments changed meanwhile.
var errCompactAborted = errors.New("segments changed during compaction")

// swapHook, if set (by tests), is called with flushMu and mu held at each
// step of a swap, to snapshot the directory as a crash would leave it.
var swapHook func(step string)

// segSnap is a cleanable segment as seen when the pass was planned.
type segSnap struct {
	s                *segment
	base, next, size int64
	idxN, tidxN      int
	created          time.Time
}

// cleanablePlan returns the cleanable segments and the index of the first
// dirty one (len if none). Caller holds mu.
func (l *Log) cleanablePlan(end int64, now time.Time) ([]segSnap, int) {
	var out []segSnap
	first := -1
	lagLimit := now.UnixMilli() - l.cfg.MinCompactionLagMs
	for _, s := range l.segs[:len(l.segs)-1] {
		if s.next > end || len(s.corrupt) > 0 || (l.cfg.MinCompactionLagMs > 0 && s.maxTs > lagLimit) {
			break
		}
		if s.next <= l.logStart && len(out) == 0 {
			continue // below the log start offset: retention removes it
		}
		if first < 0 && s.next > l.cleanedTo {
			first = len(out)
		}
		out = append(out, segSnap{s: s, base: s.base, next: s.next, size: s.size,
			idxN: len(s.index.entries), tidxN: len(s.tindex.entries), created: s.created})
	}
	if first < 0 {
		first = len(out)
	}
	return out, first
}

// DirtyRatio returns the bytes of the cleanable segments that a compaction
// pass with this cleanableEnd would treat as dirty and as clean, and
// dirty/(dirty+clean) (0 if there are none): Kafka's cleanable ratio.
func (l *Log) DirtyRatio(cleanableEnd int64, now time.Time) (ratio float64, dirty, clean int64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, 0, 0
	}
	snaps, first := l.cleanablePlan(cleanableEnd, now)
	for i, sn := range snaps {
		if i < first {
			clean += sn.size
		} else {
			dirty += sn.size
		}
	}
	if dirty+clean > 0 {
		ratio = float64(dirty) / float64(dirty+clean)
	}
	return ratio, dirty, clean
}

// ShouldCompact reports whether cleanup.policy includes compact and the
// dirty ratio (see DirtyRatio) is at least min.cleanable.dirty.ratio with
// some dirty data.
func (l *Log) ShouldCompact(cleanableEnd int64, now time.Time) (bool, float64) {
	l.mu.RLock()
	compact, minRatio := l.cfg.Compact, l.cfg.MinCleanableDirtyRatio
	l.mu.RUnlock()
	if !compact {
		return false, 0
	}
	ratio, dirty, _ := l.DirtyRatio(cleanableEnd, now)
	return dirty > 0 && ratio >= minRatio, ratio
}

// Compact runs one compaction pass (see the comment at the top of
// compact.go): it keeps only the latest record of every key in the
// cleanable closed segments, drops due tombstones, and swaps the rewritten
// segments in atomically. Concurrent reads, appends, flushes and retention
// proceed during the pass (a group whose segments retention or truncation
// changed meanwhile is skipped and Aborted is set). Compact works whatever
// cleanup.policy says; ShouldCompact decides whether it is due.
func (l *Log) Compact(opts CompactOptions) (CompactStats, error) {
	start := time.Now()
	now := opts.Now
	if now.IsZero() {
		now = start
	}
	l.cleanMu.Lock()
	defer l.cleanMu.Unlock()
	l.mu.RLock()
	if err := l.usable(); err != nil {
		l.mu.RUnlock()
		return CompactStats{}, err
	}
	c := &cleaner{l: l, cfg: l.cfg, opts: opts, prevCleaned: l.cleanedTo,
		horizon: now.UnixMilli() - l.cfg.DeleteRetentionMs,
		seeds:   [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		keys:    map[[2]uint64]int64{}, lastOfProducer: map[int64]int64{}}
	snaps, first := l.cleanablePlan(opts.CleanableEnd, now)
	l.mu.RUnlock()
	if first >= len(snaps) {
		return CompactStats{}, nil
	}
	c.stats.FirstDirty = max(snaps[first].base, c.prevCleaned)
	n, err := c.buildMap(snaps[first:])
	if errors.Is(err, errCompactAborted) {
		c.stats.Aborted = true
		return c.stats, nil
	}
	if err != nil {
		return c.stats, fmt.Errorf("compact %s: %w", l.dir, err)
	}
	snaps = snaps[:first+n]
	c.stats.DirtyEnd = snaps[len(snaps)-1].next
	c.stats.Keys = len(c.keys)
	for _, sn := range snaps[:first] {
		err := c.scanProducers(sn)
		if errors.Is(err, errCompactAborted) {
			c.stats.Aborted = true
			return c.stats, nil
		}
		if err != nil {
			return c.stats, fmt.Errorf("compact %s: %w", l.dir, err)
		}
	}
	for _, g := range groupSegments(snaps, c.cfg) {
		err := c.cleanGroup(g)
		if errors.Is(err, errCompactAborted) {
			// Retention removed, or truncation cut, these segments; the
			// groups after them are not cleaned either, so that cleanedTo
			// never passes a dirty segment.
			c.stats.Aborted = true
			l.logger.Info("compaction pass ended early: segments changed", "segment", g[0].base)
			break
		}
		if err != nil {
			return c.stats, fmt.Errorf("compact %s: %w", l.dir, err)
		}
	}
	c.stats.Elapsed = time.Since(start)
	l.logger.Info("compacted log", "dirtyFrom", c.stats.FirstDirty, "dirtyTo", c.stats.DirtyEnd, "keys", c.stats.Keys,
		"segmentsRead", c.stats.SegmentsRead, "segmentsWritten", c.stats.SegmentsWritten,
		"bytesRead", c.stats.BytesRead, "bytesWritten", c.stats.BytesWritten,
		"recordsRead", c.stats.RecordsRead, "recordsKept", c.stats.RecordsKept,
		"tombstonesDropped", c.stats.TombstonesDropped, "took", c.stats.Elapsed)
	return c.stats, nil
}

// cleaner holds the state of one compaction pass.
type cleaner struct {
	l           *Log
	cfg         Config
	opts        CompactOptions
	prevCleaned int64 // cleanedTo when the pass started
	horizon     int64 // tombstones in batches with MaxTimestamp below are due
	seeds       [2]maphash.Seed
	keys        map[[2]uint64]int64 // key hash -> highest offset in the dirty range
	// lastOfProducer is the last offset of each producer's last
	// (non-control) batch in the cleaned range.
	lastOfProducer map[int64]int64
	stats          CompactStats
}

func (c *cleaner) hash(key []byte) [2]uint64 {
	return [2]uint64{maphash.Bytes(c.seeds[0], key), maphash.Bytes(c.seeds[1], key)}
}

func (c *cleaner) noteProducer(h record.Header) {
	if h.HasProducerID() && !h.IsControl() {
		c.lastOfProducer[h.ProducerID] = max(c.lastOfProducer[h.ProducerID], h.LastOffset())
	}
}

// buildMap maps the keys of the dirty segments, stopping after the segment
// that makes the map reach MaxMapEntries. It returns how many segments it
// mapped (at least one).
func (c *cleaner) buildMap(dirty []segSnap) (int, error) {
	for i, sn := range dirty {
		if i > 0 && c.opts.MaxMapEntries > 0 && len(c.keys) >= c.opts.MaxMapEntries {
			return i, nil
		}
		err := eachBatch(sn, c.opts.Cancel, func(h record.Header, b []byte) error {
			c.noteProducer(h)
			if h.IsControl() || h.IsTransactional() || h.NumRecords == 0 {
				return nil
			}
			return record.ForEach(b, func(r *record.Record) {
				if r.Key != nil {
					c.keys[c.hash(r.Key)] = r.Offset
				}
			})
		})
		if err != nil {
			return 0, c.readErr(sn, err)
		}
	}
	return len(dirty), nil
}

// readErr turns an error reading a segment that retention or truncation
// has removed meanwhile (closing its file) into errCompactAborted.
func (c *cleaner) readErr(sn segSnap, err error) error {
	c.l.mu.RLock()
	defer c.l.mu.RUnlock()
	if c.l.closed {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	i := c.l.segmentFor(sn.base)
	if s := c.l.segs[i]; s != sn.s || s.size < sn.size {
		return errCompactAborted
	}
	return err
}

// scanProducers notes the producers of a clean segment's batches (headers
// only).
func (c *cleaner) scanProducers(sn segSnap) error {
	pos, expected := int64(0), sn.base
	for pos < sn.size {
		h, err := sn.s.headerAt(pos, sn.size, expected)
		if err != nil {
			return c.readErr(sn, err)
		}
		c.noteProducer(h)
		pos += int64(h.Size())
		expected = h.NextOffset()
	}
	return nil
}

// eachBatch reads the batches of a segment snapshot in order, checking
// framing, dense offsets and CRCs, and calls fn with each (b is valid only
// during the call). It stops early if cancel is closed.
func eachBatch(sn segSnap, cancel <-chan struct{}, fn func(h record.Header, b []byte) error) error {
	r := bufio.NewReaderSize(io.NewSectionReader(sn.s.log, 0, sn.size), 1<<20)
	buf := make([]byte, 64<<10)
	pos, expected := int64(0), sn.base
	for pos < sn.size {
		select {
		case <-cancel:
			return errors.New("compaction cancelled")
		default:
		}
		if _, err := io.ReadFull(r, buf[:record.HeaderSize]); err != nil {
			return fmt.Errorf("segment %d: read at position %d: %w", sn.base, pos, err)
		}
		h, err := record.ParseHeader(buf[:record.HeaderSize])
		if err == nil && (h.BaseOffset != expected || h.LastOffsetDelta < 0 || pos+int64(h.Size()) > sn.size) {
			err = fmt.Errorf("batch [%d,%d] of %d bytes, expected base %d within %d bytes", h.BaseOffset, h.LastOffset(), h.Size(), expected, sn.size-pos)
		}
		if err != nil {
			return fmt.Errorf("%w: segment %d: position %d: %v", record.ErrCorrupt, sn.base, pos, err)
		}
		if cap(buf) < h.Size() {
			nb := make([]byte, h.Size())
			copy(nb, buf[:record.HeaderSize])
			buf = nb
		}
		b := buf[:h.Size()]
		if _, err := io.ReadFull(r, b[record.HeaderSize:]); err != nil {
			return fmt.Errorf("segment %d: read at position %d: %w", sn.base, pos, err)
		}
		if _, err := record.Validate(b); err != nil {
			return fmt.Errorf("%w: segment %d: batch at position %d (offset %d): %v", record.ErrCorrupt, sn.base, pos, expected, err)
		}
		if err := fn(h, b); err != nil {
			return err
		}
		pos += int64(h.Size())
		expected = h.NextOffset()
	}
	return nil
}

// groupSegments splits the snapshots into runs of adjacent segments to be
// rewritten as one: the sum of their sizes must fit segment.bytes, their
// index entries the index capacity, and their offsets the 32-bit relative
// offset range.
func groupSegments(snaps []segSnap, cfg Config) [][]segSnap {
	maxIdx := max(1, int(cfg.SegmentIndexBytes)/indexEntrySize)
	maxTidx := max(1, int(cfg.SegmentIndexBytes)/timeIndexEntrySize)
	var groups [][]segSnap
	for i := 0; i < len(snaps); {
		j := i + 1
		size, idx, tidx := snaps[i].size, snaps[i].idxN, snaps[i].tidxN
		for j < len(snaps) {
			sn := snaps[j]
			if size+sn.size > cfg.SegmentBytes || idx+sn.idxN > maxIdx || tidx+sn.tidxN > maxTidx ||
				sn.next-1-snaps[i].base > math.MaxInt32 {
				break
			}
			size, idx, tidx = size+sn.size, idx+sn.idxN, tidx+sn.tidxN
			j++
		}
		if size > 0 {
			groups = append(groups, snaps[i:j])
		}
		i = j
	}
	return groups
}

// cleanedPaths returns the .cleaned paths of a segment's log, offset index
// and time index.
func cleanedPaths(dir string, base int64) [3]string {
	var p [3]string
	for i, suf := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
		p[i] = filepath.Join(dir, segmentName(base, suf)+cleanedSuffix)
	}
	return p
}

// cleanGroup rewrites a group of segments into .cleaned files and swaps
// them in.
func (c *cleaner) cleanGroup(g []segSnap) (err error) {
	base := g[0].base
	paths := cleanedPaths(c.l.dir, base)
	var files [3]*os.File
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
		if err != nil {
			for _, p := range paths {
				os.Remove(p)
			}
		}
	}()
	for i, p := range paths {
		if files[i], err = os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
			return err
		}
	}
	ns := &segment{base: base, log: files[0], index: &offsetIndex{indexFile: indexFile{f: files[1]}}, tindex: &timeIndex{indexFile: indexFile{f: files[2]}},
		next: base, maxTs: -1, maxTsOffset: -1, firstTs: -1, created: g[0].created}
	ns.setLimits(c.cfg)
	w := bufio.NewWriterSize(files[0], 1<<20)
	var pos int64
	write := func(b []byte) error {
		h, _ := record.ParseHeader(b)
		if _, err := w.Write(b); err != nil {
			return err
		}
		ns.indexBatch(h, pos, c.cfg.IndexIntervalBytes)
		pos += int64(len(b))
		c.stats.BytesWritten += int64(len(b))
		c.stats.RecordsKept += int64(h.NumRecords)
		if h.NumRecords == 0 {
			c.stats.EmptyBatches++
		}
		return nil
	}
	var run *record.Header // pending anonymous empty batch
	flushRun := func() error {
		if run == nil {
			return nil
		}
		b := record.EmptyBatch(*run)
		run = nil
		return write(b)
	}
	var inClean bool
	var batchMaxTs int64
	keep := func(r *record.Record) bool {
		if r.Key == nil {
			c.stats.KeylessDropped++
			return false
		}
		if off, ok := c.keys[c.hash(r.Key)]; ok && r.Offset < off {
			return false
		}
		if r.Value == nil && inClean && batchMaxTs < c.horizon {
			c.stats.TombstonesDropped++
			return false
		}
		return true
	}
	for _, sn := range g {
		err := eachBatch(sn, c.opts.Cancel, func(h record.Header, b []byte) error {
			c.stats.RecordsRead += int64(h.NumRecords)
			if h.IsControl() || h.IsTransactional() {
				if err := flushRun(); err != nil {
					return err
				}
				return write(b)
			}
			inClean, batchMaxTs = h.NextOffset() <= c.prevCleaned, h.MaxTimestamp
			out, kept, err := record.Filter(b, keep)
			if err != nil {
				return fmt.Errorf("segment %d: %w", sn.base, err)
			}
			if kept > 0 {
				if err := flushRun(); err != nil {
					return err
				}
				return write(out)
			}
			if h.HasProducerID() && c.lastOfProducer[h.ProducerID] == h.LastOffset() {
				// The producer's last batch: keep its sequence numbers.
				if err := flushRun(); err != nil {
					return err
				}
				return write(record.EmptyBatch(h))
			}
			if run != nil && run.PartitionLeaderEpoch == h.PartitionLeaderEpoch {
				run.LastOffsetDelta = int32(h.LastOffset() - run.BaseOffset)
				run.MaxTimestamp = max(run.MaxTimestamp, h.MaxTimestamp)
				run.BaseTimestamp = run.MaxTimestamp
				return nil
			}
			if err := flushRun(); err != nil {
				return err
			}
			run = &record.Header{BaseOffset: h.BaseOffset, LastOffsetDelta: h.LastOffsetDelta, PartitionLeaderEpoch: h.PartitionLeaderEpoch,
				BaseTimestamp: h.MaxTimestamp, MaxTimestamp: h.MaxTimestamp, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}
			return nil
		})
		if err != nil {
			return c.readErr(sn, err)
		}
		c.stats.BytesRead += sn.size
	}
	if err := flushRun(); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if last := g[len(g)-1]; ns.next != last.next {
		return fmt.Errorf("cleaned segment %d ends at offset %d, its segments at %d", base, ns.next, last.next)
	}
	ns.seal()
	if err := errors.Join(ns.persistIndexes(), ns.syncLog(), ns.syncIndexes()); err != nil {
		return err
	}
	for i, f := range files {
		files[i] = nil
		if err := f.Close(); err != nil {
			return err
		}
	}
	if err := c.l.installCleaned(g, ns, c.cfg); err != nil {
		return err
	}
	c.stats.SegmentsRead += len(g)
	c.stats.SegmentsWritten++
	return nil
}

// installCleaned swaps the cleaned files of ns (closed, with its in-memory
// state complete) in place of the group's segments. Before the commit point
// (the log's .swap rename) an error leaves the old segments; after it, an
// error is a sticky failure and Open completes the swap.
func (l *Log) installCleaned(g []segSnap, ns *segment, cfg Config) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	i := l.segmentFor(g[0].base)
	if i+len(g) >= len(l.segs) {
		return errCompactAborted
	}
	for k, sn := range g {
		if s := l.segs[i+k]; s != sn.s || s.size != sn.size || s.next != sn.next || len(s.corrupt) > 0 {
			return errCompactAborted
		}
	}
	hook := func(step string) {
		if swapHook != nil {
			swapHook(step)
		}
	}
	hook("cleaned")
	cleaned := cleanedPaths(l.dir, ns.base)
	final := [3]string{}
	for k, suf := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
		final[k] = filepath.Join(l.dir, segmentName(ns.base, suf))
	}
	// Indexes first, the log last: a .log.swap means the swap is committed.
	for _, k := range []int{1, 2, 0} {
		if err := os.Rename(cleaned[k], final[k]+swapSuffix); err != nil {
			for _, k := range []int{1, 2, 0} {
				os.Remove(final[k] + swapSuffix)
			}
			return err
		}
		if k == 1 {
			hook("index swap")
		}
	}
	if err := syncDir(l.dir); err != nil {
		return l.failWith(err)
	}
	hook("swap")
	var err error
	for k, sn := range g {
		if k == 0 {
			err = errors.Join(err, sn.s.close())
		} else {
			err = errors.Join(err, sn.s.remove())
		}
	}
	if err != nil {
		return l.failWith(err)
	}
	hook("removed")
	for _, k := range []int{1, 2, 0} {
		if err := os.Rename(final[k]+swapSuffix, final[k]); err != nil {
			return l.failWith(err)
		}
		if k == 2 {
			hook("indexes")
		}
	}
	if err := syncDir(l.dir); err != nil {
		return l.failWith(err)
	}
	hook("done")
	s, err := openSegment(l.dir, ns.base, cfg, false, ns.created)
	if err != nil {
		return l.failWith(err)
	}
	s.index.entries, s.index.persisted = ns.index.entries, ns.index.persisted
	s.tindex.entries, s.tindex.persisted = ns.tindex.entries, ns.tindex.persisted
	s.size, s.next, s.sinceIndex = ns.size, ns.next, ns.sinceIndex
	s.maxTs, s.maxTsOffset, s.firstTs = ns.maxTs, ns.maxTsOffset, ns.firstTs
	s.setLimits(l.cfg)
	s.missing = nil
	l.segs = append(l.segs[:i:i], append([]*segment{s}, l.segs[i+len(g):]...)...)
	if end := g[len(g)-1].next; end > l.cleanedTo {
		l.cleanedTo = end
		if err := writeCheckpoint(l.dir, cleanerCheckpointFile, end); err != nil {
			return l.failWith(err)
		}
	}
	return nil
}

// completeSwaps finishes compaction swaps interrupted by a crash (see the
// comment at the top of compact.go). It runs at open, before stray files
// (.cleaned, .swap) are removed.
func completeSwaps(dir string, logger *slog.Logger) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), swapSuffix)
		if !ok || e.IsDir() {
			continue
		}
		base, ok := parseSegmentName(name, logSuffix)
		if !ok {
			continue
		}
		if err := completeSwap(dir, base, entries, logger); err != nil {
			return fmt.Errorf("complete compaction swap of segment %d: %w", base, err)
		}
	}
	return nil
}

// completeSwap installs NNN.log.swap (base NNN) in place of the segments it
// replaces.
func completeSwap(dir string, base int64, entries []os.DirEntry, logger *slog.Logger) error {
	swapLog := filepath.Join(dir, segmentName(base, logSuffix)+swapSuffix)
	end, err := swapEnd(swapLog, base)
	if err != nil {
		// Fsynced before it was renamed, so this is damage, not a crash.
		logger.Error("discarding unreadable compacted segment; keeping the segments it was to replace", "file", swapLog, "err", err)
		return os.Remove(swapLog)
	}
	logger.Warn("completing an interrupted compaction swap", "segment", base, "endOffset", end)
	for _, e := range entries {
		for _, suf := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
			if b, ok := parseSegmentName(e.Name(), suf); ok && b > base && b < end {
				if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
		}
	}
	for _, suf := range []string{indexSuffix, timeIndexSuffix} {
		p := filepath.Join(dir, segmentName(base, suf))
		err := os.Rename(p+swapSuffix, p)
		if errors.Is(err, os.ErrNotExist) {
			// Already renamed, or never there: rebuild it from the log to be sure.
			err = os.Remove(p)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := os.Rename(swapLog, filepath.Join(dir, segmentName(base, logSuffix))); err != nil {
		return err
	}
	return syncDir(dir)
}

// swapEnd walks a swap log file (framing, dense offsets from base, CRC) and
// returns the offset following its last batch.
func swapEnd(path string, base int64) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	s := &segment{base: base, log: f}
	var buf []byte
	pos, expected := int64(0), base
	for pos < st.Size() {
		var h record.Header
		if h, buf, err = s.batchAt(pos, st.Size(), expected, buf); err != nil {
			return 0, err
		}
		pos += int64(h.Size())
		expected = h.NextOffset()
	}
	if pos == 0 {
		return 0, errors.New("empty")
	}
	return expected, nil
}
