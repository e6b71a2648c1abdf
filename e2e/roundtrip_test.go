package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/bucketmail/bucketmail/internal/testutil/corpus"
	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

func login(t *testing.T, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatalf("IMAP dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatalf("LOGIN: %v", err)
	}
	return c
}

// fetched is what the test remembers of one message for the restart check.
type fetched struct {
	uid   imap.UID
	flags []string
	size  int64
	sum   [32]byte
}

// TestCorpusRoundTrip delivers every corpus message over LMTP (the shared
// corpus server) and reads it back with go-imap v2's client: BODY[] is
// the trace fields plus the bytes sent, RFC822.SIZE is the octet count
// served, ENVELOPE and BODYSTRUCTURE parse and every non-multipart part's
// BODYSTRUCTURE size is the length of its BODY[part]. Then it copies
// INBOX to a new mailbox, sets flags and keywords there and expunges some
// messages, restarts the server (SIGTERM, exit status 0) and checks that
// UIDVALIDITY, UIDNEXT, UIDs, flags and bodies of both mailboxes survive.
func TestCorpusRoundTrip(t *testing.T) {
	srv, msgs := corpusServer(t)
	trace := e2e.TracePrefix(sender, user)

	c := login(t, srv.IMAPAddr)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatalf("SELECT INBOX: %v", err)
	}
	if int(sel.NumMessages) != len(msgs) {
		t.Fatalf("SELECT INBOX: %d EXISTS, want %d", sel.NumMessages, len(msgs))
	}
	if sel.UIDValidity == 0 {
		t.Errorf("UIDVALIDITY is 0")
	}

	start := time.Now()
	var served int64
	const batch = 100
	for lo := 0; lo < len(msgs); lo += batch {
		hi := min(lo+batch, len(msgs))
		var set imap.SeqSet
		set.AddRange(uint32(lo+1), uint32(hi))
		bufs, err := c.Fetch(set, &imap.FetchOptions{
			UID: true, Flags: true, RFC822Size: true, Envelope: true,
			BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
			BodySection:   []*imap.FetchItemBodySection{{Peek: true}},
		}).Collect()
		if err != nil {
			t.Fatalf("FETCH %d:%d: %v (messages %s .. %s)", lo+1, hi, err, msgs[lo].ID, msgs[hi-1].ID)
		}
		if len(bufs) != hi-lo {
			t.Fatalf("FETCH %d:%d: %d messages, want %d", lo+1, hi, len(bufs), hi-lo)
		}
		for _, b := range bufs {
			m := msgs[b.SeqNum-1]
			if b.UID != imap.UID(b.SeqNum) {
				t.Errorf("%s: seq %d has UID %d, want %d (UIDs start at 1, no gaps)", m.ID, b.SeqNum, b.UID, b.SeqNum)
			}
			body := sectionBytes(b)
			served += int64(len(body))
			checkDelivered(t, m, body, trace)
			if b.RFC822Size != int64(len(body)) {
				t.Errorf("%s: RFC822.SIZE %d, BODY[] has %d octets", m.ID, b.RFC822Size, len(body))
			}
			if b.Envelope == nil {
				t.Errorf("%s: no ENVELOPE", m.ID)
			}
			if b.BodyStructure == nil {
				t.Errorf("%s: no BODYSTRUCTURE", m.ID)
			}
			// \Recent (RFC 3501 §2.3.2) is this session's; nothing else is set.
			if fl := withoutRecent(b.Flags); len(fl) != 0 {
				t.Errorf("%s: FLAGS %v after FETCH BODY.PEEK[], want none", m.ID, fl)
			}
		}
	}
	d := time.Since(start)
	t.Logf("IMAP: FETCH BODY.PEEK[] etc. of %d messages, %.1f MB in %v: %.1f MB/s",
		len(msgs), float64(served)/1e6, d.Round(time.Millisecond), float64(served)/1e6/d.Seconds())

	checkPartSizes(t, c, msgs)
	checkBinaryNUL(t, c, msgs, trace)

	// A copy of INBOX gets flags and expunges to carry over the restart;
	// INBOX stays as delivered (other tests share it).
	const box = "RoundTrip"
	if err := c.Create(box, nil).Wait(); err != nil {
		t.Fatalf("CREATE %s: %v", box, err)
	}
	if _, err := c.Copy(imap.SeqSet{{Start: 1, Stop: 0}}, box).Wait(); err != nil {
		t.Fatalf("COPY 1:* %s: %v", box, err)
	}
	inbox := fetchState(t, c)
	if _, err := c.Select(box, nil).Wait(); err != nil {
		t.Fatalf("SELECT %s: %v", box, err)
	}
	store := func(set imap.SeqSet, flags ...imap.Flag) {
		t.Helper()
		if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: flags}, nil).Close(); err != nil {
			t.Fatalf("STORE %v +FLAGS %v: %v", set, flags, err)
		}
	}
	var seen, flagged, deleted imap.SeqSet
	wantExpunged := 0
	for i := range msgs {
		seq := uint32(i + 1)
		if i%3 == 0 {
			seen.AddNum(seq)
		}
		if i%5 == 0 {
			flagged.AddNum(seq)
		}
		if i%11 == 4 {
			deleted.AddNum(seq)
			wantExpunged++
		}
	}
	store(seen, imap.FlagSeen)
	store(flagged, imap.FlagFlagged, "$Forwarded", "e2e-keyword")
	store(deleted, imap.FlagDeleted)
	if err := c.Expunge().Close(); err != nil {
		t.Fatalf("EXPUNGE: %v", err)
	}
	copied := fetchState(t, c)
	if len(copied) != len(msgs)-wantExpunged {
		t.Errorf("%s after EXPUNGE: %d messages, want %d", box, len(copied), len(msgs)-wantExpunged)
	}
	k := 0
	for i := range msgs {
		if i%11 == 4 {
			continue
		}
		if k < len(copied) {
			f := copied[k]
			want := []string{}
			if i%5 == 0 {
				want = append(want, "$Forwarded", `\Flagged`, "e2e-keyword")
			}
			if i%3 == 0 {
				want = append(want, `\Seen`)
			}
			slices.Sort(want)
			if !slices.Equal(f.flags, want) && !(len(f.flags) == 0 && len(want) == 0) {
				t.Errorf("%s: in %s: flags %v, want %v", msgs[i].ID, box, f.flags, want)
			}
			if f.sum != inbox[i].sum {
				t.Errorf("%s: the copy in %s has other bytes than INBOX", msgs[i].ID, box)
			}
		}
		k++
	}
	selBox, err := c.Select(box, nil).Wait() // fresh UIDNEXT
	if err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	c.Close()

	srv.Restart(t)

	c2 := login(t, srv.IMAPAddr)
	for _, mb := range []struct {
		name   string
		sel    *imap.SelectData
		before []fetched
	}{{"INBOX", sel, inbox}, {box, selBox, copied}} {
		sel2, err := c2.Select(mb.name, nil).Wait()
		if err != nil {
			t.Fatalf("SELECT %s after restart: %v", mb.name, err)
		}
		if sel2.UIDValidity != mb.sel.UIDValidity {
			t.Errorf("%s: UIDVALIDITY %d after restart, was %d", mb.name, sel2.UIDValidity, mb.sel.UIDValidity)
		}
		if sel2.UIDNext != mb.sel.UIDNext {
			t.Errorf("%s: UIDNEXT %d after restart, was %d", mb.name, sel2.UIDNext, mb.sel.UIDNext)
		}
		after := fetchState(t, c2)
		if len(after) != len(mb.before) {
			t.Errorf("%s: after restart %d messages, before %d", mb.name, len(after), len(mb.before))
			continue
		}
		bad := 0
		for i := range mb.before {
			b, a := mb.before[i], after[i]
			if b.uid != a.uid || !slices.Equal(b.flags, a.flags) || b.size != a.size || b.sum != a.sum {
				if bad++; bad <= 10 {
					t.Errorf("%s seq %d: before restart UID %d flags %v size %d, after UID %d flags %v size %d (body same: %v)",
						mb.name, i+1, b.uid, b.flags, b.size, a.uid, a.flags, a.size, b.sum == a.sum)
				}
			}
		}
	}

	// The next APPEND gets the UIDNEXT from before the restart.
	msg := "Subject: after restart\r\n\r\nhi\r\n"
	ac := c2.Append(box, int64(len(msg)), nil)
	ac.Write([]byte(msg))
	ac.Close()
	ad, err := ac.Wait()
	if err != nil {
		t.Fatalf("APPEND after restart: %v", err)
	}
	if ad.UID != selBox.UIDNext || ad.UIDValidity != selBox.UIDValidity {
		t.Errorf("APPEND after restart: APPENDUID %d %d, want %d %d", ad.UIDValidity, ad.UID, selBox.UIDValidity, selBox.UIDNext)
	}
}

// withoutRecent returns the flags other than \Recent, sorted.
func withoutRecent(flags []imap.Flag) []string {
	var out []string
	for _, f := range flags {
		if !strings.EqualFold(string(f), `\Recent`) {
			out = append(out, string(f))
		}
	}
	slices.Sort(out)
	return out
}

func sectionBytes(b *imapclient.FetchMessageBuffer) []byte {
	for _, s := range b.BodySection {
		return s.Bytes
	}
	return nil
}

// checkDelivered checks that body is the trace header fields followed by
// the message as sent over LMTP (with NUL served as 0x80, see e2e.Served).
func checkDelivered(t *testing.T, m corpus.Message, body []byte, trace interface{ Match([]byte) bool }) {
	t.Helper()
	want := e2e.Served(m.Raw)
	if !bytes.HasSuffix(body, want) {
		t.Errorf("%s: BODY[] (%d octets) does not end with the %d octets delivered; first difference: %s",
			m.ID, len(body), len(want), firstDiff(body, want))
		return
	}
	if p := body[:len(body)-len(want)]; !trace.Match(p) {
		t.Errorf("%s: trace header fields before the message: %q", m.ID, p)
	}
}

// firstDiff describes where got stops matching the end-aligned want.
func firstDiff(got, want []byte) string {
	if len(got) < len(want) {
		return fmt.Sprintf("BODY[] is shorter than the message (%d < %d)", len(got), len(want))
	}
	g := got[len(got)-len(want):]
	for i := range want {
		if g[i] != want[i] {
			lo := max(0, i-20)
			return fmt.Sprintf("at message offset %d: got %q, want %q", i, g[lo:min(len(g), i+20)], want[lo:min(len(want), i+20)])
		}
	}
	return "none"
}

// checkPartSizes fetches BODY[part] for every part imapclient's
// BodyStructure.Walk visits that is not a multipart and checks its length
// against the size the BODYSTRUCTURE gives.
func checkPartSizes(t *testing.T, c *imapclient.Client, msgs []corpus.Message) {
	t.Helper()
	for i, m := range msgs {
		seq := uint32(i + 1)
		b, err := c.Fetch(imap.SeqSetNum(seq), &imap.FetchOptions{BodyStructure: &imap.FetchItemBodyStructure{}}).Collect()
		if err != nil || len(b) != 1 || b[0].BodyStructure == nil {
			t.Errorf("%s: FETCH BODYSTRUCTURE: %v", m.ID, err)
			continue
		}
		var sections []*imap.FetchItemBodySection
		var sizes []uint32
		b[0].BodyStructure.Walk(func(path []int, part imap.BodyStructure) bool {
			if sp, ok := part.(*imap.BodyStructureSinglePart); ok {
				sections = append(sections, &imap.FetchItemBodySection{Part: path, Peek: true})
				sizes = append(sizes, sp.Size)
			}
			return true
		})
		if len(sections) == 0 {
			continue
		}
		pb, err := c.Fetch(imap.SeqSetNum(seq), &imap.FetchOptions{BodySection: sections}).Collect()
		if err != nil || len(pb) != 1 {
			t.Errorf("%s: FETCH %d part sections: %v", m.ID, len(sections), err)
			continue
		}
		got := map[string]int{}
		for _, s := range pb[0].BodySection {
			got[partString(s.Section.Part)] = len(s.Bytes)
		}
		for k, sec := range sections {
			p := partString(sec.Part)
			if n, ok := got[p]; !ok {
				t.Errorf("%s: BODY[%s] missing from the FETCH response", m.ID, p)
			} else if n != int(sizes[k]) {
				t.Errorf("%s: BODY[%s] has %d octets, BODYSTRUCTURE says %d", m.ID, p, n, sizes[k])
			}
		}
	}
}

// checkBinaryNUL checks that BINARY.PEEK[] (RFC 3516, a literal8) returns
// the stored bytes exactly, NUL included, for the messages holding a NUL.
func checkBinaryNUL(t *testing.T, c *imapclient.Client, msgs []corpus.Message, trace interface{ Match([]byte) bool }) {
	t.Helper()
	n := 0
	for i, m := range msgs {
		if bytes.IndexByte(m.Raw, 0) < 0 {
			continue
		}
		n++
		b, err := c.Fetch(imap.SeqSetNum(uint32(i+1)), &imap.FetchOptions{
			BinarySection: []*imap.FetchItemBinarySection{{Peek: true}},
		}).Collect()
		if err != nil || len(b) != 1 || len(b[0].BinarySection) != 1 {
			t.Errorf("%s: FETCH BINARY.PEEK[]: %v", m.ID, err)
			continue
		}
		got, want := b[0].BinarySection[0].Bytes, e2e.Wire(m.Raw)
		if !bytes.HasSuffix(got, want) || !trace.Match(got[:len(got)-len(want)]) {
			t.Errorf("%s: BINARY[] is not the stored bytes: %s", m.ID, firstDiff(got, want))
		}
	}
	if n == 0 {
		t.Logf("no corpus message with a NUL in this run")
	}
}

func partString(p []int) string {
	s := make([]string, len(p))
	for i, n := range p {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ".")
}

// fetchState returns UID, flags (sorted), size and body hash of every
// message in the selected mailbox.
func fetchState(t *testing.T, c *imapclient.Client) []fetched {
	t.Helper()
	bufs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID: true, Flags: true, RFC822Size: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatalf("FETCH 1:*: %v", err)
	}
	out := make([]fetched, len(bufs))
	for i, b := range bufs {
		f := fetched{uid: b.UID, size: b.RFC822Size, sum: sha256.Sum256(sectionBytes(b))}
		f.flags = withoutRecent(b.Flags)
		slices.Sort(f.flags)
		out[i] = f
	}
	return out
}
