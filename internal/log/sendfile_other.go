//go:build !linux

package log

import (
	"errors"
	"os"
	"syscall"
)

// SendTo sends nothing on this system: the caller writes data from memory.
func (r FileRange) SendTo(sock syscall.RawConn, data []byte) (int, error) { return 0, nil }

// dupFile is not supported here: ReadFileRange fails and callers read.
func dupFile(f *os.File) (*os.File, error) {
	return nil, errors.New("zero-copy reads are supported on Linux only")
}
