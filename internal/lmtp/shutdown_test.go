package lmtp_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// openTransaction dials f, sends LHLO, MAIL and one RCPT for alice, and
// returns the connection and its reader.
func openTransaction(t *testing.T, f *fixture) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	expect := func(cmd, prefix string) {
		t.Helper()
		if cmd != "" {
			io.WriteString(conn, cmd+"\r\n")
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", cmd, err)
			}
			if len(line) >= 4 && line[3] == '-' {
				continue
			}
			if !strings.HasPrefix(line, prefix) {
				t.Fatalf("%s: %q, want %s", cmd, line, prefix)
			}
			return
		}
	}
	expect("", "220 ")
	expect("LHLO client.example", "250 ")
	expect("MAIL FROM:<carol@example.net>", "250 ")
	expect("RCPT TO:<alice@example.org>", "250 ")
	return conn, r
}

// TestShutdownOpenTransaction: a client idle after RCPT is told 421 4.3.2
// and closed at once; Shutdown does not wait for its context.
func TestShutdownOpenTransaction(t *testing.T) {
	f := newFixture(t, "tcp")
	_, r := openTransaction(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := f.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v with only an idle transaction open", d)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "421 4.3.2 Service shutting down\r\n" {
		t.Errorf("after Shutdown: %q, %v; want 421 4.3.2", line, err)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("after 421: read %v, want EOF", err)
	}
}

// TestShutdownStalledData: a client stalled in the middle of DATA is
// answered 421 4.3.2 for its recipient when Shutdown's context ends, and
// Shutdown returns within a second or so of that; nothing is stored.
func TestShutdownStalledData(t *testing.T) {
	f := newFixture(t, "tcp")
	conn, r := openTransaction(t, f)
	io.WriteString(conn, "DATA\r\n")
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "354 ") {
		t.Fatalf("DATA: %q, %v", line, err)
	}
	io.WriteString(conn, "Subject: stalled\r\n\r\nhalf a line")
	time.Sleep(50 * time.Millisecond) // let the delivery start reading
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := f.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("Shutdown took %v, want about its 300ms context", d)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "421 4.3.2 <alice@example.org> Service shutting down\r\n" {
		t.Errorf("stalled DATA after Shutdown: %q, %v; want 421 4.3.2 for alice", line, err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "421 4.3.2 Service shutting down\r\n" {
		t.Errorf("after the recipient's reply: %q, %v; want 421 4.3.2", line, err)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("after 421: read %v, want EOF", err)
	}
	if n := len(f.inbox("alice@example.org")); n != 0 {
		t.Errorf("alice has %d messages, want 0", n)
	}
}
