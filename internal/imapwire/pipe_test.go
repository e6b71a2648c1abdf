package imapwire

import (
	"bufio"
	"errors"
	"io"
	"testing"
	"time"
)

// TestDiscardLineDoesNotWaitForRefusedLiteral drives the decoder over a
// pipe with a client that, like a real one, never sends the bytes of a
// synchronizing literal before it gets "+": DiscardLine must return
// without them, and the server answers before the client goes on.
func TestDiscardLineDoesNotWaitForRefusedLiteral(t *testing.T) {
	pr, pw := io.Pipe()
	answered := make(chan string, 4)
	go func() {
		pw.Write([]byte("a LOGIN {99999}\r\n"))
		if got := <-answered; got != "a BAD" {
			pw.CloseWithError(errors.New("unexpected answer " + got))
			return
		}
		pw.Write([]byte("b LOGIN {3}\r\n"))
		if got := <-answered; got != "+" {
			pw.CloseWithError(errors.New("unexpected answer " + got))
			return
		}
		pw.Write([]byte("abc x\r\n"))
		pw.Close()
	}()
	d := NewDecoder(bufio.NewReader(pr), func() error { answered <- "+"; return nil })
	done := make(chan error, 1)
	go func() {
		tag, err := d.Tag()
		if err != nil || tag != "a" {
			done <- errors.New("first tag")
			return
		}
		d.SP()
		if err := loginArgs(d); !errors.Is(err, ErrLiteralTooLarge) {
			done <- err
			return
		}
		if err := d.DiscardLine(); err != nil {
			done <- err
			return
		}
		answered <- "a BAD"
		if tag, err = d.Tag(); err != nil || tag != "b" {
			done <- errors.New("second tag")
			return
		}
		d.SP()
		if err := loginArgs(d); err != nil {
			done <- err
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("decoder blocked waiting for bytes the client never sends")
	}
}
