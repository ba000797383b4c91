package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

const (
	syncBlockSize       = 1 << 20  // bytes per write in the bandwidth test
	smallWriteSize      = 4 << 10  // bytes per write in the ops/s test
	datasyncBlockSize   = 64 << 10 // bytes per append in the fdatasync bandwidth test
	defaultFsyncBytes   = 64 << 20
	defaultFsyncOpsTime = 2 * time.Second
	// smallWriteWrap bounds the file the ops/s test writes: once this many
	// bytes have been appended it overwrites from the start again, so a fast
	// (or non-durable, e.g. tmpfs) filesystem cannot fill up the disk.
	smallWriteWrap = 64 << 20
)

// DiskReport is the result of the disk phase: how fast the filesystem under
// Dir makes appended data durable. Both tests call (*os.File).Sync after every
// write, which is fsync(2) on Linux, the same call the broker makes when it
// flushes a log segment.
type DiskReport struct {
	Dir             string  `json:"dir"`
	SyncBlockBytes  int     `json:"sync_block_bytes"`  // bytes written before each sync in the bandwidth test
	SyncBytes       int64   `json:"sync_bytes"`        // total bytes written and synced in the bandwidth test
	SyncSeconds     float64 `json:"sync_seconds"`      // wall time of the bandwidth test
	SyncMBps        float64 `json:"sync_mb_per_sec"`   // SyncBytes / SyncSeconds, in 10^6 bytes per second
	SmallWriteBytes int     `json:"small_write_bytes"` // bytes written before each sync in the ops/s test
	SmallOps        int64   `json:"small_ops"`         // write+sync operations completed in the ops/s test
	SmallSeconds    float64 `json:"small_seconds"`     // wall time of the ops/s test
	SmallOpsPerSec  float64 `json:"small_ops_per_sec"` // SmallOps / SmallSeconds
	// DatasyncMBps is appending DatasyncBlockBytes then fdatasync(2), as
	// fio --fdatasync: the reference the issue compares a produce run to.
	DatasyncBlockBytes int     `json:"datasync_block_bytes"`
	DatasyncMBps       float64 `json:"datasync_mb_per_sec"`
}

// measureDisk runs the disk phase in a temporary file under dir, which it
// removes before returning. total is the byte budget of the bandwidth test and
// opsTime the duration of the small-write test; zero selects the defaults.
func measureDisk(ctx context.Context, dir string, total int64, opsTime time.Duration) (rep *DiskReport, err error) {
	if total <= 0 {
		total = defaultFsyncBytes
	}
	if opsTime <= 0 {
		opsTime = defaultFsyncOpsTime
	}
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, "strand-bench-fsync-*")
	if err != nil {
		return nil, fmt.Errorf("disk: create temp file in %s: %w", dir, err)
	}
	defer func() {
		if cerr := errors.Join(f.Close(), os.Remove(f.Name())); cerr != nil && err == nil {
			err = fmt.Errorf("disk: clean up %s: %w", f.Name(), cerr)
		}
	}()
	rep = &DiskReport{Dir: dir, SyncBlockBytes: syncBlockSize, SmallWriteBytes: smallWriteSize, DatasyncBlockBytes: datasyncBlockSize}

	block := make([]byte, syncBlockSize)
	fillRandom(block)
	start := time.Now()
	for rep.SyncBytes < total {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("disk: %w", err)
		}
		if _, err := f.Write(block); err != nil {
			return nil, fmt.Errorf("disk: write %s: %w", f.Name(), err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("disk: sync %s: %w", f.Name(), err)
		}
		rep.SyncBytes += syncBlockSize
	}
	rep.SyncSeconds = time.Since(start).Seconds()
	rep.SyncMBps = rate(float64(rep.SyncBytes)/1e6, rep.SyncSeconds)

	if err := f.Truncate(0); err != nil {
		return nil, fmt.Errorf("disk: truncate %s: %w", f.Name(), err)
	}
	var written int64
	start = time.Now()
	for written < total {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("disk: %w", err)
		}
		if _, err := f.WriteAt(block[:datasyncBlockSize], written); err != nil {
			return nil, fmt.Errorf("disk: write %s: %w", f.Name(), err)
		}
		if err := datasync(f); err != nil {
			return nil, fmt.Errorf("disk: fdatasync %s: %w", f.Name(), err)
		}
		written += datasyncBlockSize
	}
	rep.DatasyncMBps = rate(float64(written)/1e6, time.Since(start).Seconds())

	// The small-write test starts from an empty file so its first pass
	// appends, as a log does.
	if err := f.Truncate(0); err != nil {
		return nil, fmt.Errorf("disk: truncate %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("disk: sync %s: %w", f.Name(), err)
	}
	small := block[:smallWriteSize]
	var off int64
	start = time.Now()
	deadline := start.Add(opsTime)
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("disk: %w", err)
		}
		if _, err := f.WriteAt(small, off); err != nil {
			return nil, fmt.Errorf("disk: write %s: %w", f.Name(), err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("disk: sync %s: %w", f.Name(), err)
		}
		rep.SmallOps++
		off = (off + smallWriteSize) % smallWriteWrap
	}
	rep.SmallSeconds = time.Since(start).Seconds()
	rep.SmallOpsPerSec = rate(float64(rep.SmallOps), rep.SmallSeconds)
	return rep, nil
}

// rate returns n/seconds, or 0 when no time was measured.
func rate(n, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return n / seconds
}
