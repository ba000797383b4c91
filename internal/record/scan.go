package record

import "fmt"

// Scan reads a log from start up to end through read (which returns the
// record set at an offset; empty at the end) and calls fn with each batch,
// its parsed header and from, the offset that read was called at: a batch
// may begin before from (a read returns whole batches), so records below
// from or at or past end are the caller's to skip. Scan stops at the first
// error of read, the framing or fn, at an empty read, and fails if a read
// makes no progress.
func Scan(start, end int64, read func(offset int64) ([]byte, error), fn func(h Header, batch []byte, from int64) error) error {
	for off := start; off < end; {
		data, err := read(off)
		if err != nil {
			return fmt.Errorf("read at offset %d: %w", off, err)
		}
		if len(data) == 0 {
			break
		}
		next := off
		err = Split(data, func(b []byte) error {
			h, err := ParseHeader(b)
			if err != nil {
				return err
			}
			next = h.NextOffset()
			return fn(h, b, off)
		})
		if err != nil {
			return err
		}
		if next <= off {
			return fmt.Errorf("read at offset %d made no progress", off)
		}
		off = next
	}
	return nil
}
