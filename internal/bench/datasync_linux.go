package bench

import (
	"os"

	"golang.org/x/sys/unix"
)

// datasync is fdatasync(2), the call the broker makes after a segment append.
func datasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
