//go:build !linux

package log

import "syscall"

// SendTo sends nothing on this system: the caller writes data from memory.
func (r FileRange) SendTo(sock syscall.RawConn, data []byte) (int, error) { return 0, nil }
