package e2e

import "fmt"

// Kill stops the server with SIGKILL (a crash: no shutdown, no flush) and
// waits for the process to exit. Errors: the server was not running.
func (s *Server) Kill() error {
	if !s.Running() {
		return fmt.Errorf("bucketmail serve: not running")
	}
	s.kill()
	s.logFile.Close()
	return nil
}

// PID returns the process id of the running server, 0 when it has not
// been started.
func (s *Server) PID() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}
