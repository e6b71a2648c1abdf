package proc

import (
	"errors"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func TestStop(t *testing.T) {
	for _, tc := range []struct {
		name     string
		script   string // the child ignores SIGTERM in the second case
		wantKill bool
	}{
		{"graceful", "sleep 30", false},
		{"killed after grace", "trap '' TERM; sleep 30", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", tc.script)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // let the trap be set
			done := make(chan struct{})
			var werr error
			go func() { werr = cmd.Wait(); close(done) }()
			Stop(cmd.Process, done, syscall.SIGTERM, 300*time.Millisecond)
			var ee *exec.ExitError
			if !errors.As(werr, &ee) {
				t.Fatalf("Wait = %v, want a signal exit", werr)
			}
			ws := ee.Sys().(syscall.WaitStatus)
			if got := ws.Signal() == syscall.SIGKILL; got != tc.wantKill {
				t.Fatalf("ended by %v, want killed %v", ws.Signal(), tc.wantKill)
			}
		})
	}
}

func TestOnFreePort(t *testing.T) {
	var ln net.Listener
	defer func() {
		if ln != nil {
			ln.Close()
		}
	}()
	calls := 0
	port, err := OnFreePort(5, func(port int) error {
		calls++
		if calls < 3 {
			return errors.New("taken")
		}
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		return err
	})
	if err != nil || calls != 3 || port == 0 || ln.Addr().(*net.TCPAddr).Port != port {
		t.Fatalf("OnFreePort = %d, %v after %d calls", port, err, calls)
	}
	if _, err := OnFreePort(2, func(int) error { return errors.New("always") }); err == nil || err.Error() != "always" {
		t.Fatalf("OnFreePort with a failing start = %v, want its last error", err)
	}
}
