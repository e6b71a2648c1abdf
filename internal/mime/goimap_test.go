package mime

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/bucketmail/bucketmail/internal/testutil/corpus"
)

// fakeIMAP answers just enough of IMAP4rev1 on one connection for
// go-imap's client to SELECT and FETCH one message whose BODYSTRUCTURE,
// BODY and ENVELOPE are what next returns.
func fakeIMAP(conn net.Conn, next func() (bs, body, env string)) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	w := bufio.NewWriter(conn)
	w.WriteString("* OK [CAPABILITY IMAP4rev1] ready\r\n")
	w.Flush()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		tag, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		cmd, _, _ := strings.Cut(rest, " ")
		switch strings.ToUpper(cmd) {
		case "CAPABILITY":
			w.WriteString("* CAPABILITY IMAP4rev1\r\n")
		case "SELECT", "EXAMINE":
			w.WriteString("* 1 EXISTS\r\n* OK [UIDVALIDITY 1] x\r\n")
		case "FETCH":
			bs, body, env := next()
			fmt.Fprintf(w, "* 1 FETCH (BODYSTRUCTURE %s BODY %s ENVELOPE %s)\r\n", bs, body, env)
		case "LOGOUT":
			w.WriteString("* BYE\r\n" + tag + " OK done\r\n")
			w.Flush()
			return
		}
		w.WriteString(tag + " OK done\r\n")
		w.Flush()
	}
}

// TestGoIMAPClientParses sends the BODYSTRUCTURE, BODY and ENVELOPE of
// every corpus message to emersion/go-imap v2's client, an independent
// parser: it must accept all of them and see the same number of parts.
func TestGoIMAPClientParses(t *testing.T) {
	var mu sync.Mutex
	var cur *Message
	srv, cli := net.Pipe()
	go fakeIMAP(srv, func() (string, string, string) {
		mu.Lock()
		defer mu.Unlock()
		return cur.Root.BodyStructure(true), cur.Root.BodyStructure(false), cur.Root.Envelope
	})
	c := imapclient.New(cli, nil)
	defer c.Close()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	opts := &imap.FetchOptions{BodyStructure: &imap.FetchItemBodyStructure{Extended: true}, Envelope: true}
	var deep strings.Builder
	for i := 0; i < 2*MaxNesting; i++ {
		fmt.Fprintf(&deep, "Content-Type: message/rfc822\r\n\r\n")
	}
	var deepMP strings.Builder
	for i := 0; i < 2*MaxNesting; i++ {
		fmt.Fprintf(&deepMP, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	synthetic := []corpus.Message{
		{ID: "deep message/rfc822", Raw: []byte(deep.String())},
		{ID: "deep multipart", Raw: []byte(deepMP.String())},
		{ID: "empty", Raw: nil},
		{ID: "empty multipart", Raw: []byte("Content-Type: multipart/mixed\r\n\r\n")},
		{ID: "message/global", Raw: []byte("Content-Type: message/global\r\n\r\nSubject: \xc3\xa9\r\n\r\nx\r\n")},
	}
	n := 0
	walk := func(fn func(corpus.Message)) {
		for _, m := range synthetic {
			fn(m)
		}
		corpus.Walk(t, "", fn)
	}
	walk(func(cm corpus.Message) {
		m, err := Parse(bytes.NewReader(corpus.CRLF(cm.Raw)))
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		cur = m
		mu.Unlock()
		msgs, err := c.Fetch(imap.SeqSetNum(1), opts).Collect()
		if err != nil {
			t.Fatalf("%s: go-imap: %v", cm.ID, err)
		}
		if len(msgs) != 1 || msgs[0].BodyStructure == nil || msgs[0].Envelope == nil {
			t.Fatalf("%s: go-imap returned %+v", cm.ID, msgs)
		}
		if got, want := countLeaves(msgs[0].BodyStructure), countParts(m.Root); got != want {
			t.Errorf("%s: go-imap sees %d leaf parts, we have %d", cm.ID, got, want)
		}
		n++
	})
	if n <= len(synthetic) {
		t.Skip("no corpus")
	}
}

func countLeaves(bs imap.BodyStructure) int {
	switch b := bs.(type) {
	case *imap.BodyStructureMultiPart:
		n := 0
		for _, c := range b.Children {
			n += countLeaves(c)
		}
		return n
	case *imap.BodyStructureSinglePart:
		if b.MessageRFC822 != nil {
			return 1 + countLeaves(b.MessageRFC822.BodyStructure)
		}
	}
	return 1
}

// countParts counts what BODYSTRUCTURE shows as single parts.
func countParts(p *Part) int {
	switch {
	case p.Multipart:
		if len(p.Parts) == 0 {
			return 1
		}
		n := 0
		for _, c := range p.Parts {
			n += countParts(c)
		}
		return n
	case p.Message != nil:
		return 1 + countParts(p.Message)
	}
	return 1
}
