package log

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxSendfile bounds one sendfile(2) call (Linux sends at most ~2 GiB).
const maxSendfile = 1 << 30

// SendTo sends data, the bytes ReadFile returned with r, to the socket sock
// with sendfile(2) from r's file at an explicit offset (so concurrent sends
// of one file never share a file position), waiting for the socket as a
// Write on it would (its write deadline applies). It returns how many bytes
// it sent; the caller writes data[sent:] from memory, which happens when
// the file was closed before the send began or was truncated since the
// read (then sending from the file could send other bytes), or when r has
// no file. The send holds a reference on the file's descriptor (through
// its RawConn), so a segment closed or deleted meanwhile keeps its open
// file, and its bytes, until the send ends.
//
// data may be nil for a range of ReadFileRange: then a truncation since
// the read, or a closed range, is ErrFileChanged.
func (r FileRange) SendTo(sock syscall.RawConn, data []byte) (sent int, err error) {
	if r.file == nil || r.n == 0 {
		return 0, nil
	}
	defer func() {
		if err == nil && sent < r.n && data == nil {
			err = ErrFileChanged
		}
	}()
	raw, err := r.file.SyscallConn()
	if err != nil {
		return 0, nil
	}
	var serr, werr error
	cerr := raw.Control(func(ffd uintptr) {
		werr = sock.Write(func(sfd uintptr) bool {
			for sent < r.n {
				r.guard.mu.RLock()
				if r.guard.gen != r.gen {
					r.guard.mu.RUnlock()
					return true // cut since the read: the rest goes from memory
				}
				off := r.pos + int64(sent)
				n, err := unix.Sendfile(int(sfd), int(ffd), &off, min(r.n-sent, maxSendfile))
				r.guard.mu.RUnlock()
				switch {
				case err == nil && n > 0:
					sent += n
				case errors.Is(err, unix.EAGAIN):
					return false // wait until the socket is writable
				case errors.Is(err, unix.EINTR):
				case err != nil:
					serr = err
					return true
				default: // n == 0: the file is shorter than the read saw
					return true
				}
			}
			return true
		})
	})
	if serr == nil {
		serr = werr // the socket's own error (a deadline, a closed conn)
	}
	if cerr != nil && serr == nil && sent == 0 {
		return 0, nil // the file was closed before the send: send from memory
	}
	return sent, serr
}

// dupFile returns a new descriptor of f's open file (F_DUPFD_CLOEXEC).
func dupFile(f *os.File) (*os.File, error) {
	raw, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd int
	var derr error
	if err := raw.Control(func(ffd uintptr) {
		fd, derr = unix.FcntlInt(ffd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup %s: %w", f.Name(), derr)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}
