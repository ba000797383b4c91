package log

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// syncfs makes every write to f's filesystem made before the call durable
// (syncfs(2)); it reports a writeback error seen on the filesystem since
// f's last syncfs (or since it was opened) once.
func syncfs(f *os.File) error {
	for {
		err := unix.Syncfs(int(f.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "syncfs", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}

// deviceOf returns the filesystem (st_dev) holding path.
func deviceOf(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return st.Dev, nil
}

// syncfsReportsErrors reports whether syncfs(2) returns writeback errors:
// Linux 5.8 and later (before, it returned 0 even when data was lost).
func syncfsReportsErrors() (bool, string) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false, fmt.Sprintf("uname: %v", err)
	}
	release := unix.ByteSliceToString(u.Release[:])
	if !kernelAtLeast(release, 5, 8) {
		return false, "Linux " + release + " is older than 5.8: its syncfs(2) does not report writeback errors"
	}
	return true, ""
}
