//go:build linux || darwin || freebsd || netbsd || openbsd

package producer

import (
	"errors"
	"io"
	"syscall"
)

// peerClosed reports whether the peer of a pooled connection has already
// closed it (or sent something unasked), without blocking: a MSG_PEEK,
// MSG_DONTWAIT receive of one byte. A queued server that restarted or
// dropped an idle client leaves such connections in the pool; writing a
// request into one would make its outcome look unknown when nothing was
// stored.
func peerClosed(c syscall.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var checkErr error
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == nil && n == 0:
			checkErr = io.EOF
		case rerr == nil:
			checkErr = errUnsolicitedData
		case errors.Is(rerr, syscall.EAGAIN), errors.Is(rerr, syscall.EWOULDBLOCK), errors.Is(rerr, syscall.EINTR):
			checkErr = nil
		default:
			checkErr = rerr
		}
		return true // never wait for readability
	})
	if err != nil {
		return err
	}
	return checkErr
}
