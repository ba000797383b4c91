// Package log implements a partition's segmented, append-only log in the
// Kafka on-disk format: NNNNNNNNNNNNNNNNNNNN.log files of whole v2 record
// batches with sparse .index and .timeindex files, rolled by size, age and
// index capacity, with retention, truncation, fsync policy with group commit,
// and crash recovery.
//
// Design invariant: every byte read from disk is length- and CRC-checked
// before it is used or served (header-only walks check framing and offset
// continuity; every batch returned by Read or decoded for a timestamp
// lookup is CRC-verified). Corruption that recovery cannot cut off safely
// is reported by Corruption and makes reads of the affected offsets fail
// with record.ErrCorrupt rather than serve bad bytes.
//
// Offsets are dense: each batch's BaseOffset equals the previous batch's
// NextOffset, and each segment is named by the offset of its first batch.
package log

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"strand/internal/record"
)

// Config holds the per-partition log settings (Kafka topic configs).
// Zero values of SegmentBytes, SegmentMs, SegmentIndexBytes,
// IndexIntervalBytes, FlushMessages, FlushMs and MaxMessageBytes mean the
// default; RetentionMs and RetentionBytes are used as given (-1 =
// unlimited).
type Config struct {
	SegmentBytes       int64 // segment.bytes: roll when the active segment would exceed it (capped at 2 GiB-1)
	SegmentMs          int64 // segment.ms: roll when the active segment's first batch is older
	SegmentIndexBytes  int32 // segment.index.bytes: roll when the offset or time index is full
	RetentionMs        int64 // retention.ms, -1 = unlimited
	RetentionBytes     int64 // retention.bytes, -1 = unlimited
	IndexIntervalBytes int32 // index.interval.bytes: log bytes between offset index entries
	FlushMessages      int64 // flush.messages: <=1 WaitFlushed fsyncs (group commit); N>1 background fsync every N messages
	FlushMs            int64 // flush.ms: max ms data stays unflushed (background flusher)
	MaxMessageBytes    int32 // max.message.bytes: larger batches fail with ErrMessageTooLarge

	// Compaction (see Compact); used as given.
	Compact                bool    // cleanup.policy contains compact: appends need keys, the cleaner may run
	MinCleanableDirtyRatio float64 // min.cleanable.dirty.ratio (ShouldCompact)
	DeleteRetentionMs      int64   // delete.retention.ms: how long cleaned tombstones stay
	MinCompactionLagMs     int64   // min.compaction.lag.ms: segments with newer records are not cleaned
}

// DefaultConfig returns Kafka's defaults, except FlushMessages = 1 (every
// acknowledged append is fsynced, with group commit).
func DefaultConfig() Config {
	return Config{
		SegmentBytes:       1 << 30,
		SegmentMs:          7 * 24 * 3600 * 1000,
		SegmentIndexBytes:  10 << 20,
		RetentionMs:        7 * 24 * 3600 * 1000,
		RetentionBytes:     -1,
		IndexIntervalBytes: 4096,
		FlushMessages:      1,
		FlushMs:            math.MaxInt64,
		MaxMessageBytes:    1048588,

		MinCleanableDirtyRatio: 0.5,
		DeleteRetentionMs:      24 * 3600 * 1000,
	}
}

// normalize fills zero fields with defaults and clamps SegmentBytes so that
// file positions fit the index's uint32.
func (c Config) normalize() Config {
	d := DefaultConfig()
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = d.SegmentBytes
	}
	c.SegmentBytes = min(c.SegmentBytes, math.MaxInt32)
	if c.SegmentMs <= 0 {
		c.SegmentMs = d.SegmentMs
	}
	if c.SegmentIndexBytes <= 0 {
		c.SegmentIndexBytes = d.SegmentIndexBytes
	}
	c.SegmentIndexBytes = max(c.SegmentIndexBytes, 4*timeIndexEntrySize)
	if c.IndexIntervalBytes <= 0 {
		c.IndexIntervalBytes = d.IndexIntervalBytes
	}
	if c.FlushMessages <= 0 {
		c.FlushMessages = d.FlushMessages
	}
	if c.FlushMs <= 0 {
		c.FlushMs = d.FlushMs
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = d.MaxMessageBytes
	}
	return c
}

// Errors returned by Log methods (wrapped with context; use errors.Is).
// Bad input batches yield errors wrapping record.ErrCorrupt or
// record.ErrInvalid; corrupt data on disk yields record.ErrCorrupt.
var (
	// ErrOffsetOutOfRange: the offset is below the log start offset or
	// above the log end offset.
	ErrOffsetOutOfRange = errors.New("offset out of range")
	// ErrMessageTooLarge: a batch exceeds max.message.bytes, or a record set
	// exceeds segment.bytes.
	ErrMessageTooLarge = errors.New("message too large")
	// ErrClosed: the log has been closed.
	ErrClosed = errors.New("log closed")
)

// Log is one partition's log. All methods are safe for concurrent use.
// Fsyncs run without holding mu, so reads and appends never wait for a
// disk flush.
type Log struct {
	dir    string
	logger *slog.Logger

	// flushMu serializes fsyncs (group commit) and every operation that
	// shrinks or removes segment files (Truncate, retention, Close), so no
	// fsync ever races with a file being closed. Lock order: flushMu, then mu.
	flushMu sync.Mutex

	// mu guards all fields below and the mutable state of every segment.
	mu           sync.RWMutex
	cfg          Config
	segs         []*segment // ascending base offsets; the last one is active; never empty while open
	logStart     int64
	leo          int64
	flushed      int64 // every offset below is fsynced
	checkpointed int64 // recovery point last written to disk
	startCkpt    int64 // log start offset in the checkpoint file (0 if none): Close rewrites it only if it differs
	lastFlush    time.Time
	needCkpt     bool  // a segment was rolled since the recovery point was written
	cutUnsynced  bool  // a truncation or recovery cut a log file since it was opened: Close fsyncs every segment
	failed       error // sticky I/O failure: the log refuses writes after it
	closed       bool
	cleanedTo    int64 // offsets below went through a compaction pass (cleanerCheckpointFile)

	// truncations counts truncations (afterTruncate); guarded by mu. A
	// coalesced sync (syncfs.go) covers a snapshot only if none came between.
	truncations uint64

	// epochsUnsynced: the leader epoch checkpoint was written without fsync
	// (epochsync.go) epochWrites times so far; guarded by mu.
	epochsUnsynced bool
	epochWrites    uint64

	// syncer shares syncfs(2) calls with the data dir's other logs
	// (syncfs.go); nil: none.
	syncer atomic.Pointer[DirSyncer]

	// epochs is the leader epoch cache (epoch.go); guarded by mu.
	epochs epochCache

	// cleanMu serializes compactions. Lock order: cleanMu, flushMu, mu.
	cleanMu sync.Mutex

	fsyncs   atomic.Int64 // number of flush passes that fsynced a log file
	stopOnce sync.Once
	kick     chan struct{}
	parked   atomic.Bool // the background flusher waits for a kick, its ticker stopped (see backgroundFlusher)
	stop     chan struct{}
	done     chan struct{}
}

// LogStartOffset returns the first offset that may be read.
func (l *Log) LogStartOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.logStart
}

// LogEndOffset returns the log end offset (LEO): the offset the next
// appended record gets.
func (l *Log) LogEndOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.leo
}

// Size returns the total bytes of log data in all segments.
func (l *Log) Size() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var n int64
	for _, s := range l.segs {
		n += s.size
	}
	return n
}

// Dir returns the partition directory.
func (l *Log) Dir() string { return l.dir }

// Config returns the log's configuration.
func (l *Log) Config() Config {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.cfg
}

// SetConfig replaces the configuration; it applies to later appends,
// retention and flushes.
func (l *Log) SetConfig(cfg Config) {
	cfg = cfg.normalize()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg = cfg
	for _, s := range l.segs {
		s.setLimits(cfg)
	}
}

// Corruption returns an error (wrapping record.ErrCorrupt) describing every
// corrupt region that recovery found and could not safely repair, naming
// segment, offsets and file position; nil if there is none. Regions vanish
// once retention or truncation removes them.
func (l *Log) Corruption() error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var errs []error
	for _, s := range l.segs {
		for _, r := range s.corrupt {
			errs = append(errs, fmt.Errorf("%w: segment %d: offsets [%d,%d) unreadable at file positions [%d,%d)",
				record.ErrCorrupt, s.base, r.offset, r.endOffset, r.pos, r.end))
		}
	}
	return errors.Join(errs...)
}

// segmentFor returns the index of the last segment with base <= off (0 if
// off is below every base). Caller holds mu.
func (l *Log) segmentFor(off int64) int {
	lo, hi := 0, len(l.segs)
	for lo < hi {
		m := (lo + hi) / 2
		if l.segs[m].base <= off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return max(0, lo-1)
}

// active returns the active segment. Caller holds mu.
func (l *Log) active() *segment { return l.segs[len(l.segs)-1] }

// usable returns an error if the log is closed or failed. Caller holds mu.
func (l *Log) usable() error {
	if l.closed {
		return fmt.Errorf("log %s: %w", l.dir, ErrClosed)
	}
	if l.failed != nil {
		return fmt.Errorf("log %s: failed earlier: %w", l.dir, l.failed)
	}
	return nil
}

// ActiveSegmentBase returns the base offset of the active segment (it grows
// at every roll).
func (l *Log) ActiveSegmentBase() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.active().base
}
