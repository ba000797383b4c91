package log

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"strand/internal/record"
)

// Names of the per-partition metadata files.
const (
	cleanShutdownFile = ".clean-shutdown"
	recoveryPointFile = "recovery-point.checkpoint"
	logStartFile      = "log-start-offset.checkpoint"
)

// strayFile reports whether name is a leftover of an interrupted operation
// that is safe to delete at open (after completeSwaps has installed any
// committed compaction swap).
func strayFile(name string) bool {
	for _, suf := range []string{".tmp", ".cleaned", ".deleted", ".swap"} {
		if strings.HasSuffix(name, suf) {
			return true
		}
	}
	return false
}

// parseSegmentName returns the base offset of a "<20 digits>.<suffix>" name.
func parseSegmentName(name, suffix string) (int64, bool) {
	stem, ok := strings.CutSuffix(name, suffix)
	if !ok || len(stem) != 20 {
		return 0, false
	}
	v, err := strconv.ParseInt(stem, 10, 64)
	return v, err == nil && v >= 0
}

// Open opens the log in dir, creating the directory if absent, and runs
// crash recovery: without a clean-shutdown marker every segment from the
// one holding the recovery point onwards is scanned batch by batch (length,
// CRC, offset continuity); a torn tail of the last segment is truncated,
// other corruption is recorded (see Corruption). Index files that are
// missing or fail validation are rebuilt from the log. A nil logger means
// slog.Default().
func Open(dir string, cfg Config, logger *slog.Logger) (*Log, error) {
	return OpenWith(dir, cfg, logger, OpenOptions{})
}

// OpenOptions are what a caller that manages many logs (the replica
// manager) tells Open about a log's directory.
type OpenOptions struct {
	// Clean: the caller vouches that the log was last closed by a
	// successful CloseUnmarked and not opened since (it keeps one
	// clean-shutdown record per log dir instead of a marker per log, and
	// removes that record durably before opening any log it lists). The
	// log is then loaded as after a clean shutdown: nothing is rescanned.
	Clean bool
	// DirSynced: the caller fsyncs the log's directory (and its entry in
	// the parent) after Open and before the log's first write, so a new
	// log need not write a recovery point at its first flush only to make
	// its files' directory entries durable.
	DirSynced bool
}

// OpenWith is Open with options (see OpenOptions).
func OpenWith(dir string, cfg Config, logger *slog.Logger, opts OpenOptions) (*Log, error) {
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("dir", dir)
	cfg = cfg.normalize()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open log %s: %w", dir, err)
	}
	l := &Log{dir: dir, logger: logger, cfg: cfg, lastFlush: time.Now(),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if err := l.load(opts); err != nil {
		for _, s := range l.segs {
			s.close()
		}
		return nil, fmt.Errorf("open log %s: %w", dir, err)
	}
	go l.backgroundFlusher()
	return l, nil
}

// load reads the directory and recovers the segments.
func (l *Log) load(opts OpenOptions) error {
	if err := completeSwaps(l.dir, l.logger); err != nil {
		return err
	}
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return err
	}
	var bases []int64
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() {
			continue
		}
		if strayFile(name) {
			l.logger.Info("removing stray file", "file", name)
			if err := os.Remove(filepath.Join(l.dir, name)); err != nil {
				return err
			}
			continue
		}
		if base, ok := parseSegmentName(name, logSuffix); ok {
			bases = append(bases, base)
		}
	}
	slices.Sort(bases)
	// Index files without a log file are orphans.
	for _, e := range entries {
		for _, suf := range []string{indexSuffix, timeIndexSuffix} {
			if base, ok := parseSegmentName(e.Name(), suf); ok {
				if _, found := slices.BinarySearch(bases, base); !found {
					l.logger.Info("removing orphan index file", "file", e.Name())
					os.Remove(filepath.Join(l.dir, e.Name()))
				}
			}
		}
	}

	_, statErr := os.Stat(filepath.Join(l.dir, cleanShutdownFile))
	marker := statErr == nil // a per-log marker (Close, or an older version's shutdown)
	clean := marker || opts.Clean
	recoveryPoint, rpErr := readCheckpoint(l.dir, recoveryPointFile)
	if rpErr != nil {
		if !errors.Is(rpErr, os.ErrNotExist) {
			l.logger.Warn("unreadable recovery point checkpoint, recovering all segments", "err", rpErr)
		}
		recoveryPoint = 0
		clean = clean && errors.Is(rpErr, os.ErrNotExist)
	}
	logStart, lsErr := readCheckpoint(l.dir, logStartFile)
	if lsErr != nil {
		if !errors.Is(lsErr, os.ErrNotExist) {
			l.logger.Warn("unreadable log start offset checkpoint, using first segment", "err", lsErr)
		}
		logStart = 0
	}
	l.startCkpt = logStart

	now := time.Now()
	fresh := len(bases) == 0 // a new log: nothing to recover
	if fresh {
		s, err := openSegment(l.dir, max(logStart, 0), l.cfg, true, now)
		if err != nil {
			return err
		}
		l.segs = []*segment{s}
	}
	scanned := make([]bool, len(bases))
	for i, base := range bases {
		s, err := openSegment(l.dir, base, l.cfg, false, now)
		if err != nil {
			return err
		}
		l.segs = append(l.segs, s)
		last := i == len(bases)-1
		nextBase := int64(-1)
		if !last {
			nextBase = bases[i+1]
		}
		if !clean && (last || nextBase > recoveryPoint) {
			scanned[i] = true
			err = l.recoverSegment(s, last, nextBase)
		} else {
			err = l.loadSegment(s, last, nextBase)
		}
		if err != nil {
			return err
		}
	}
	l.checkGaps()

	l.leo = l.active().next
	l.logStart = min(max(logStart, l.segs[0].base), l.leo)
	if cleaned, err := readCheckpoint(l.dir, cleanerCheckpointFile); err == nil {
		l.cleanedTo = min(cleaned, l.leo)
	}
	if !clean && !fresh {
		l.logger.Info("recovered log after unclean shutdown", "recoveryPoint", recoveryPoint, "logEndOffset", l.leo)
		for i, s := range l.segs {
			if i < len(scanned) && scanned[i] {
				if err := errors.Join(s.persistIndexes(), s.syncLog(), s.syncIndexes(), s.closeIndexes()); err != nil {
					return err
				}
			}
		}
	}
	rescanFrom := l.leo // the leader epoch cache is rebuilt from the first rescanned segment on
	if i := slices.Index(scanned, true); i >= 0 {
		rescanFrom = l.segs[i].base
	}
	if err := l.loadEpochs(rescanFrom); err != nil {
		return err
	}
	l.flushed = l.leo
	if fresh {
		// The first flush writes the recovery point, which also makes the
		// new files' directory entries durable (see flush), unless the
		// caller syncs the directory (DirSynced); a missing checkpoint
		// means "recover everything", which is right until then.
		l.checkpointed, l.needCkpt = l.leo, !opts.DirSynced
		if marker {
			if err := os.Remove(filepath.Join(l.dir, cleanShutdownFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	}
	// After a clean shutdown nothing was rescanned, and the recovery point
	// on disk still holds (it only ever names fsynced data, and is lowered
	// durably by truncation): it is rewritten only if it lies below the
	// active segment, where it would make a later crash rescan more than
	// the active segment, or above the LEO (data lost since it was
	// written), where it would spare later segments a rescan. After a
	// recovery the scanned segments are now fsynced, so the recovery point
	// moves to the LEO.
	l.checkpointed = recoveryPoint
	if !clean || recoveryPoint < l.active().base || recoveryPoint > l.leo {
		if err := writeCheckpoint(l.dir, recoveryPointFile, l.leo); err != nil {
			return err
		}
		l.checkpointed = l.leo
	}
	if marker {
		// The marker must be gone for good before the first write: a
		// crash after it must not find the log "clean".
		if err := os.Remove(filepath.Join(l.dir, cleanShutdownFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return syncDir(l.dir)
	}
	return nil
}

// checkGaps records missing offsets between consecutive segments (lost
// data) as corrupt regions of the earlier segment.
func (l *Log) checkGaps() {
	for i := 0; i+1 < len(l.segs); i++ {
		s, n := l.segs[i], l.segs[i+1]
		switch {
		case s.next < n.base:
			l.logger.Error("offsets missing between segments", "segment", s.base, "from", s.next, "to", n.base)
			s.corrupt = append(s.corrupt, corruptRegion{pos: s.size, end: s.size, offset: s.next, endOffset: n.base})
			s.next = n.base
		case s.next > n.base:
			l.logger.Error("segment overlaps the next one", "segment", s.base, "next", s.next, "nextSegment", n.base)
		}
	}
}

// loadSegment loads a segment that needs no full scan: its indexes are
// loaded and validated (rebuilt by a full scan if invalid) and the batches
// after the last index entry are walked to find the segment's end.
func (l *Log) loadSegment(s *segment, last bool, nextBase int64) error {
	st, err := s.log.Stat()
	if err != nil {
		return fmt.Errorf("segment %d: %w", s.base, err)
	}
	size := st.Size()
	if last && len(s.missing) == 2 {
		// An active segment closed without index entries leaves no index
		// files (see close): the walk below covers it from its start, as
		// it would with empty files.
	} else if err := l.loadIndexes(s, size); err != nil {
		l.logger.Warn("rebuilding index files from the log", "segment", s.base, "reason", err)
		return l.recoverSegment(s, last, nextBase)
	}
	// Walk the tail after the last offset index entry.
	start := s.index.lookup(math.MaxUint32)
	pos, expected := int64(start.pos), s.base+int64(start.rel)
	tailFrom := pos
	for pos < size {
		h, err := s.headerAt(pos, size, expected)
		if err != nil {
			l.logger.Warn("log tail does not match its index, rescanning segment", "segment", s.base, "err", err)
			return l.recoverSegment(s, last, nextBase)
		}
		if pos == 0 {
			s.firstTs = h.MaxTimestamp
		}
		if h.MaxTimestamp > s.maxTs {
			s.maxTs, s.maxTsOffset = h.MaxTimestamp, h.BaseOffset
		}
		if pos == tailFrom {
			s.sinceIndex, s.size, s.next = int64(h.Size()), pos+int64(h.Size()), h.NextOffset()
		} else {
			s.indexBatch(h, pos, l.cfg.IndexIntervalBytes)
		}
		pos += int64(h.Size())
		expected = h.NextOffset()
	}
	if s.firstTs < 0 && size > 0 {
		if h, err := s.headerAt(0, size, s.base); err == nil {
			s.firstTs = h.MaxTimestamp
		}
	}
	if t := s.tindex.last(); t.ts >= 0 && int64(t.rel) >= s.next-s.base {
		l.logger.Warn("time index points past the log end, rebuilding", "segment", s.base)
		return l.recoverSegment(s, last, nextBase)
	}
	return nil
}

// loadIndexes loads and validates both index files against a log of
// logSize bytes, and takes the segment's max timestamp from the time index.
func (l *Log) loadIndexes(s *segment, logSize int64) error {
	if len(s.missing) > 0 {
		return fmt.Errorf("missing index files %v", s.missing)
	}
	if err := s.index.load(logSize); err != nil {
		return err
	}
	if n := len(s.index.entries); n > 0 {
		e := s.index.entries[n-1]
		if _, err := s.headerAt(int64(e.pos), logSize, s.base+int64(e.rel)); err != nil {
			return fmt.Errorf("last offset index entry: %w", err)
		}
	}
	if err := s.tindex.load(math.MaxUint32); err != nil {
		return err
	}
	if t := s.tindex.last(); t.ts >= 0 {
		s.maxTs, s.maxTsOffset = t.ts, s.base+int64(t.rel)
	}
	return nil
}

// recoverSegment scans the whole segment, checking every batch's framing,
// CRC and offset continuity, and rebuilds its indexes. At the first bad
// batch it looks for valid data after it: if there is some, the bad range is
// recorded as corrupt and kept; otherwise, in the last segment, the torn
// tail is truncated, and in an earlier segment the rest of the file is
// recorded as corrupt up to nextBase.
func (l *Log) recoverSegment(s *segment, last bool, nextBase int64) error {
	st, err := s.log.Stat()
	if err != nil {
		return fmt.Errorf("segment %d: %w", s.base, err)
	}
	return l.recoverRange(s, st.Size(), last, nextBase)
}

// recoverRange is recoverSegment over the first fileSize bytes of the
// segment. With last, a bad tail with no valid batch after it is cut off (a
// torn write); without, it is recorded as corrupt up to nextBase.
func (l *Log) recoverRange(s *segment, fileSize int64, last bool, nextBase int64) error {
	var err error
	s.resetState()
	var buf []byte
	pos, expected := int64(0), s.base
	for pos < fileSize {
		var h record.Header
		h, buf, err = s.batchAt(pos, fileSize, expected, buf)
		if err == nil {
			s.indexBatch(h, pos, l.cfg.IndexIntervalBytes)
			pos += int64(h.Size())
			expected = h.NextOffset()
			continue
		}
		if !errors.Is(err, record.ErrCorrupt) {
			return err // an I/O error, not bad data
		}
		q, qh, found, rerr := l.resync(s, pos+1, fileSize, expected, nextBase)
		if rerr != nil {
			return rerr
		}
		if found {
			l.logger.Error("corrupt data inside segment; keeping it and failing reads of it",
				"segment", s.base, "offset", expected, "position", pos, "resumeOffset", qh.BaseOffset, "resumePosition", q, "err", err)
			s.corrupt = append(s.corrupt, corruptRegion{pos: pos, end: q, offset: expected, endOffset: qh.BaseOffset})
			s.size, s.next = q, qh.BaseOffset
			s.sinceIndex = int64(l.cfg.IndexIntervalBytes) + 1 // index the batch after the gap
			pos, expected = q, qh.BaseOffset
			continue
		}
		if last {
			l.logger.Warn("truncating torn tail of the log", "segment", s.base, "offset", expected, "position", pos, "bytesCut", fileSize-pos, "err", err)
			if terr := s.log.Truncate(pos); terr != nil {
				return fmt.Errorf("segment %d: truncate torn tail: %w", s.base, terr)
			}
			l.cutUnsynced = true
			fileSize = pos
		} else {
			l.logger.Error("corrupt data at the end of a non-final segment; keeping it and failing reads of it",
				"segment", s.base, "offset", expected, "position", pos, "nextSegment", nextBase, "err", err)
			s.corrupt = append(s.corrupt, corruptRegion{pos: pos, end: fileSize, offset: expected, endOffset: nextBase})
			s.next = nextBase
		}
		break
	}
	s.size = fileSize
	if len(s.corrupt) == 0 || s.corrupt[len(s.corrupt)-1].end != fileSize {
		s.next = expected
	}
	if !last {
		s.seal()
	}
	return s.persistIndexes()
}

// resync looks for the first valid batch (CRC correct, base offset >=
// expected and below nextBase if known) starting at a position in
// [from, fileSize). Candidates are filtered on the magic byte and a
// plausible length before the CRC is computed.
func (l *Log) resync(s *segment, from, fileSize, expected, nextBase int64) (int64, record.Header, bool, error) {
	const chunk = 1 << 20
	buf := make([]byte, chunk+record.HeaderSize)
	var batchBuf []byte
	for cs := from; cs+record.HeaderSize <= fileSize; cs += chunk {
		n := min(int64(len(buf)), fileSize-cs)
		b := buf[:n]
		if _, err := s.log.ReadAt(b, cs); err != nil {
			return 0, record.Header{}, false, fmt.Errorf("segment %d: read at %d: %w", s.base, cs, err)
		}
		for i := 0; i < chunk && i+record.HeaderSize <= len(b); i++ {
			if b[i+16] != 2 {
				continue
			}
			h, err := record.ParseHeader(b[i : i+record.HeaderSize])
			q := cs + int64(i)
			if err != nil || q+int64(h.Size()) > fileSize || h.BaseOffset < expected || h.BaseOffset-expected > math.MaxInt32 ||
				(nextBase >= 0 && h.BaseOffset >= nextBase) || h.LastOffsetDelta < 0 {
				continue
			}
			var verr error
			h, batchBuf, verr = s.batchAt(q, fileSize, h.BaseOffset, batchBuf)
			if verr == nil {
				return q, h, true, nil
			}
			if !errors.Is(verr, record.ErrCorrupt) {
				return 0, record.Header{}, false, verr
			}
		}
	}
	return 0, record.Header{}, false, nil
}

// readCheckpoint reads a checkpoint file holding one decimal int64.
func readCheckpoint(dir, name string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("checkpoint %s: bad content %q", name, b)
	}
	return v, nil
}

// writeCheckpoint atomically replaces a checkpoint file (temp file, fsync,
// rename, directory fsync).
func writeCheckpoint(dir, name string, v int64) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", name, err)
	}
	_, err = f.WriteString(strconv.FormatInt(v, 10) + "\n")
	err = errors.Join(err, f.Sync(), f.Close())
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", name, err)
	}
	return nil
}

// syncDir fsyncs a directory so that file creations and renames persist.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
