package redis

import "testing"

func TestStartStop(t *testing.T) {
	s := Start(t)
	if !ping(s.Addr) {
		t.Fatalf("no PONG from %s", s.Addr)
	}
	s.Stop()
	if ping(s.Addr) {
		t.Fatalf("%s still answers after Stop", s.Addr)
	}
	s.Stop()
	s.Restart(t)
	if !ping(s.Addr) {
		t.Fatalf("no PONG from %s after Restart", s.Addr)
	}
}
