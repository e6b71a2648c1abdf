// Package proc holds the process plumbing the test-server starters in
// internal/testutil share: stopping a server gracefully with a deadline,
// and starting one on a free loopback port despite the race for it.
package proc

import (
	"errors"
	"net"
	"os"
	"time"
)

// Stop sends sig to p (SIGTERM, or a server's own fast-shutdown signal)
// and waits up to grace for done (closed when the process has been
// waited for); then it kills p and waits for done.
func Stop(p *os.Process, done <-chan struct{}, sig os.Signal, grace time.Duration) {
	p.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		p.Kill()
		<-done
	}
}

// OnFreePort calls start with a free 127.0.0.1 port until it succeeds,
// at most tries times: another process may take the port between the
// probe and the server binding it. It returns the port start took, or
// start's last error.
func OnFreePort(tries int, start func(port int) error) (int, error) {
	err := errors.New("proc: no tries")
	for range tries {
		l, lerr := net.Listen("tcp", "127.0.0.1:0")
		if lerr != nil {
			return 0, lerr
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if err = start(port); err == nil {
			return port, nil
		}
	}
	return 0, err
}
