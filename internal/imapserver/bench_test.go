package imapserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// BenchmarkFetchBodyPeek measures FETCH 1:* BODY.PEEK[] over loopback
// (200 messages of about 20 KB); b.SetBytes makes "go test -bench" print
// MB/s.
func BenchmarkFetchBodyPeek(b *testing.B) {
	st := newTestStore(b)
	ctx := context.Background()
	acct, err := st.Account(ctx, "alice")
	if err != nil {
		b.Fatal(err)
	}
	body := strings.Repeat("All work and no play makes Jack a dull boy.\r\n", 450)
	var total int64
	for i := 0; i < 200; i++ {
		msg := fmt.Sprintf("Subject: message %d\r\nFrom: a@example.org\r\n\r\n%s", i, body)
		in, err := st.Spool(ctx, strings.NewReader(msg), false, 0)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := acct.Append(ctx, "INBOX", in, nil, time.Time{}); err != nil {
			b.Fatal(err)
		}
		in.Close()
		total += int64(len(msg))
	}
	srv := New(Options{Store: st, Auth: testUsers})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln, false)
	defer srv.Shutdown(ctx)
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReaderSize(nc, 64<<10)
	untilTag := func(tag string) {
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if strings.HasPrefix(l, tag+" ") {
				if !strings.HasPrefix(l, tag+" OK") {
					b.Fatal(l)
				}
				return
			}
			// Skip literal data announced at the end of a line.
			if i := strings.LastIndexByte(l, '{'); i >= 0 && strings.HasSuffix(l, "}\r\n") {
				var n int64
				fmt.Sscanf(l[i:], "{%d}", &n)
				if _, err := io.CopyN(io.Discard, br, n); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	br.ReadString('\n')
	fmt.Fprintf(nc, "a LOGIN alice secret\r\nb EXAMINE INBOX\r\n")
	untilTag("a")
	untilTag("b")
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tag := fmt.Sprintf("f%d", i)
		fmt.Fprintf(nc, "%s FETCH 1:* BODY.PEEK[]\r\n", tag)
		untilTag(tag)
	}
}
