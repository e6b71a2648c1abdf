package mailstore

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/metadb"
)

func TestNewAccountDefaults(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("alice@example.org")
	mbs, err := a.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"INBOX": "", "Drafts": UseDrafts, "Sent": UseSent, "Trash": UseTrash, "Junk": UseJunk, "Archive": UseArchive}
	var names []string
	uvs := map[uint32]bool{}
	guid := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, mb := range mbs {
		names = append(names, mb.Name)
		if su, ok := want[mb.Name]; !ok || su != mb.SpecialUse {
			t.Errorf("%s: special-use %q, want %q (known %v)", mb.Name, mb.SpecialUse, su, ok)
		}
		if !mb.Subscribed || mb.UIDNext != 1 || mb.HighestModSeq != 1 || mb.Messages != 0 || !guid.MatchString(mb.GUID) {
			t.Errorf("%s: %+v", mb.Name, mb)
		}
		if uvs[mb.UIDValidity] || mb.UIDValidity == 0 {
			t.Errorf("%s: UIDVALIDITY %d repeated or zero", mb.Name, mb.UIDValidity)
		}
		uvs[mb.UIDValidity] = true
	}
	if got := strings.Join(names, ","); got != "Archive,Drafts,INBOX,Junk,Sent,Trash" {
		t.Errorf("mailboxes %s", got)
	}
	// A second Account call opens the same account.
	b := e.account("alice@example.org")
	if b.id != a.id {
		t.Errorf("account id %d, then %d", a.id, b.id)
	}
	subs, _ := a.Subscriptions(ctx)
	if got := strings.Join(subs, ","); got != "Archive,Drafts,INBOX,Junk,Sent,Trash" {
		t.Errorf("subscriptions %s", got)
	}
	if _, err := e.s.Account(ctx, ""); !errors.Is(err, ErrNoAccount) {
		t.Errorf("empty account: %v", err)
	}
}

func TestMailboxNames(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"INBOX", "INBOX", true},
		{"inbox", "INBOX", true},
		{"InBoX/Sub", "INBOX/Sub", true},
		{"Inboxes", "Inboxes", true},
		{"a/b/", "a/b", true},
		{"Éléments envoyés", "Éléments envoyés", true},
		{"", "", false},
		{"/", "", false},
		{"a//b", "", false},
		{"/a", "", false},
		{"a\tb", "", false},
		{"a\x00b", "", false},
		{"\xff", "", false},
		{strings.Repeat("x", MaxNameBytes+1), "", false},
	} {
		got, err := normName(tc.in)
		if tc.ok != (err == nil) || got != tc.want {
			t.Errorf("normName(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadName) {
			t.Errorf("normName(%q) error %v is not ErrBadName", tc.in, err)
		}
	}
}

func TestCreateMailbox(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("a@x")
	mb, err := a.CreateMailbox(ctx, "Lists/go/nuts/", "")
	if err != nil {
		t.Fatal(err)
	}
	if mb.Name != "Lists/go/nuts" || mb.UIDNext != 1 || mb.HighestModSeq != 1 || mb.Subscribed {
		t.Errorf("created %+v", mb)
	}
	for _, n := range []string{"Lists", "Lists/go"} {
		if _, err := a.Mailbox(ctx, n); err != nil {
			t.Errorf("parent %s: %v", n, err)
		}
	}
	if _, err := a.CreateMailbox(ctx, "lists/go/nuts", ""); err != nil {
		t.Errorf("names are case-sensitive except INBOX: %v", err)
	}
	for _, n := range []string{"Lists/go/nuts", "inbox", "Lists"} {
		if _, err := a.CreateMailbox(ctx, n, ""); !errors.Is(err, ErrMailboxExists) {
			t.Errorf("create %s again: %v", n, err)
		}
	}
	if _, err := a.CreateMailbox(ctx, "All", `\Bogus`); !errors.Is(err, ErrBadName) {
		t.Errorf("bad special-use: %v", err)
	}
	if _, err := a.Mailbox(ctx, "nope"); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("missing mailbox: %v", err)
	}
}

// TestConcurrentAppends: many goroutines append to one mailbox while
// another copies into it and an observer reads it. No UID is given twice,
// UIDs are dense (nothing failed), MODSEQ rises strictly with UID (the
// sequencer commits in UID order), and the observer never sees UIDNEXT or
// HIGHESTMODSEQ go down or a UID appear below one it has already seen.
func TestConcurrentAppends(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("a@x")
	workers, per := 8, 12
	if testing.Short() {
		per = 6
	}
	// Source for the copier.
	var srcUIDs []uint32
	for i := 0; i < per; i++ {
		srcUIDs = append(srcUIDs, e.appendMsg(a, "Archive", testMsg(1000+i)).UID)
	}
	archive := e.mailbox(a, "Archive")
	inbox := e.mailbox(a, "INBOX")

	stop := make(chan struct{})
	obsErr := make(chan error, 1)
	go func() { // observer
		var lastNext uint32
		var lastHMS uint64
		var seen []uint32
		for {
			select {
			case <-stop:
				obsErr <- nil
				return
			default:
			}
			mb, err := a.Mailbox(ctx, "INBOX")
			if err != nil {
				obsErr <- err
				return
			}
			st, err := a.States(ctx, inbox.ID)
			if err != nil {
				obsErr <- err
				return
			}
			if mb.UIDNext < lastNext || mb.HighestModSeq < lastHMS {
				obsErr <- fmt.Errorf("UIDNEXT %d after %d, HIGHESTMODSEQ %d after %d", mb.UIDNext, lastNext, mb.HighestModSeq, lastHMS)
				return
			}
			lastNext, lastHMS = mb.UIDNext, mb.HighestModSeq
			now := uidsOf(st)
			if len(now) < len(seen) || !slices.Equal(now[:len(seen)], seen) {
				obsErr <- fmt.Errorf("UIDs %v after %v: a UID appeared below one already seen", now, seen)
				return
			}
			seen = now
			time.Sleep(time.Millisecond)
		}
	}()

	var wg sync.WaitGroup
	results := make(chan AppendResult, workers*per)
	errs := make(chan error, workers*per+per)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				in, err := e.s.Spool(ctx, strings.NewReader(testMsg(w*100+i)), false, 0)
				if err != nil {
					errs <- err
					return
				}
				r, err := a.Append(ctx, "INBOX", in, nil, time.Time{})
				in.Close()
				if err != nil {
					errs <- err
					return
				}
				results <- r
			}
		}()
	}
	wg.Add(1)
	go func() { // copier: one message per COPY, so every copy has its own MODSEQ
		defer wg.Done()
		for _, u := range srcUIDs {
			if _, err := a.Copy(ctx, archive.ID, []uint32{u}, "INBOX"); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	if err := <-obsErr; err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	close(results)
	got := map[uint32]bool{}
	for r := range results {
		if got[r.UID] {
			t.Fatalf("UID %d given twice", r.UID)
		}
		got[r.UID] = true
		if r.UIDValidity != inbox.UIDValidity || r.MailboxID != inbox.ID {
			t.Fatalf("result %+v, mailbox %+v", r, inbox)
		}
	}
	total := workers*per + len(srcUIDs)
	st := e.states(a, inbox.ID)
	if len(st) != total {
		t.Fatalf("%d messages, want %d", len(st), total)
	}
	for i, s := range st {
		if s.UID != uint32(i+1) {
			t.Fatalf("UIDs not dense: position %d has UID %d", i, s.UID)
		}
		if i > 0 && s.ModSeq <= st[i-1].ModSeq {
			t.Fatalf("MODSEQ not strictly increasing with UID: uid %d modseq %d, uid %d modseq %d", st[i-1].UID, st[i-1].ModSeq, s.UID, s.ModSeq)
		}
	}
	mb := e.mailbox(a, "INBOX")
	if mb.UIDNext != uint32(total+1) || mb.HighestModSeq != uint64(total+1) || mb.Messages != uint32(total) {
		t.Fatalf("mailbox %+v, want UIDNEXT %d HIGHESTMODSEQ %d", mb, total+1, total+1)
	}
}

func TestRestartKeepsState(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("a@x")
	e.appendMsg(a, "INBOX", testMsg(1), `\Seen`)
	e.appendMsg(a, "INBOX", testMsg(2), "$Work", `\Flagged`)
	e.appendMsg(a, "INBOX", testMsg(3))
	inbox := e.mailbox(a, "INBOX")
	if _, _, err := a.StoreFlags(ctx, inbox.ID, []uint32{3}, Add, []string{`\Answered`, "Later"}, 0); err != nil {
		t.Fatal(err)
	}
	before := e.mailbox(a, "INBOX")
	stBefore := e.states(a, inbox.ID)

	e.reopen()
	a = e.account("a@x")
	after := e.mailbox(a, "INBOX")
	if before != after {
		t.Errorf("mailbox after restart %+v, before %+v", after, before)
	}
	stAfter := e.states(a, inbox.ID)
	if fmt.Sprint(stAfter) != fmt.Sprint(stBefore) {
		t.Errorf("states after restart %v, before %v", stAfter, stBefore)
	}
	want := "[{1 2 [\\Seen]} {2 3 [$Work \\Flagged]} {3 5 [Later \\Answered]}]"
	if got := fmt.Sprint(stAfter); got != want {
		t.Errorf("states %s, want %s", got, want)
	}
	r := e.appendMsg(a, "INBOX", testMsg(4))
	if r.UID != 4 || r.ModSeq != 6 || r.UIDValidity != before.UIDValidity {
		t.Errorf("append after restart %+v", r)
	}
	if got := e.body(a, inbox.ID, 2); got != testMsg(2) {
		t.Errorf("body after restart %q", got)
	}
	// INTERNALDATE keeps its zone.
	a.Messages(ctx, inbox.ID, []uint32{1}, func(m *Message) error {
		if got := m.InternalDate.Format(time.RFC3339); got != "2024-05-06T07:08:09+02:00" {
			t.Errorf("INTERNALDATE %s", got)
		}
		return nil
	})
}

func renderChanges(c Changes) string {
	var b strings.Builder
	fmt.Fprintf(&b, "hms=%d next=%d", c.HighestModSeq, c.UIDNext)
	for _, u := range c.Updated {
		fmt.Fprintf(&b, " %d@%d%v", u.UID, u.ModSeq, u.Flags)
	}
	fmt.Fprintf(&b, " vanished=%v", c.Expunged)
	return b.String()
}

// TestChangesGolden runs a fixed sequence of changes and checks Changes
// since every interesting MODSEQ against golden answers.
func TestChangesGolden(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("a@x")
	mb, err := a.CreateMailbox(ctx, "Test", "")
	if err != nil {
		t.Fatal(err)
	}
	id := mb.ID
	step := func(what string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: got %v, want %v", what, got, want)
		}
	}
	for i := 1; i <= 3; i++ { // uid i, modseq i+1
		r := e.appendMsg(a, "Test", testMsg(i))
		step("append", []uint64{uint64(r.UID), r.ModSeq}, []uint64{uint64(i), uint64(i + 1)})
	}
	ch, _, err := a.StoreFlags(ctx, id, []uint32{2}, Add, []string{`\Seen`}, 0) // modseq 5
	step("store 2", ch, "[{2 5 [\\Seen]}]")
	ch, _, _ = a.StoreFlags(ctx, id, []uint32{1, 3, 99}, Add, []string{`\Deleted`}, 0) // modseq 6
	step("store 1,3", ch, "[{1 6 [\\Deleted]} {3 6 [\\Deleted]}]")
	ch, _, _ = a.StoreFlags(ctx, id, []uint32{1}, Add, []string{`\deleted`}, 0) // no change, no modseq
	step("store no-op", len(ch), 0)
	ex, err := a.Expunge(ctx, id, nil) // modseq 7
	step("expunge", ex, []uint32{1, 3})
	e.appendMsg(a, "Test", testMsg(4))                                         // uid 4 modseq 8
	ch, _, _ = a.StoreFlags(ctx, id, []uint32{4}, Add, []string{"$Label1"}, 0) // modseq 9
	step("store 4", ch, "[{4 9 [$Label1]}]")
	ch, _, _ = a.StoreFlags(ctx, id, []uint32{2}, Add, []string{"$LABEL1"}, 0) // modseq 10, spelled as first written
	step("store 2 kw", ch, "[{2 10 [$Label1 \\Seen]}]")
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		since uint64
		want  string
	}{
		{0, "hms=10 next=5 2@10[$Label1 \\Seen] 4@9[$Label1] vanished=[1 3]"},
		{4, "hms=10 next=5 2@10[$Label1 \\Seen] 4@9[$Label1] vanished=[1 3]"},
		{6, "hms=10 next=5 2@10[$Label1 \\Seen] 4@9[$Label1] vanished=[1 3]"},
		{7, "hms=10 next=5 2@10[$Label1 \\Seen] 4@9[$Label1] vanished=[]"},
		{8, "hms=10 next=5 2@10[$Label1 \\Seen] 4@9[$Label1] vanished=[]"},
		{9, "hms=10 next=5 2@10[$Label1 \\Seen] vanished=[]"},
		{10, "hms=10 next=5 vanished=[]"},
	} {
		c, err := a.Changes(ctx, id, mb.UIDValidity, tc.since)
		if err != nil {
			t.Fatal(err)
		}
		if got := renderChanges(c); got != tc.want {
			t.Errorf("since %d:\n got %s\nwant %s", tc.since, got, tc.want)
		}
	}

	// UNCHANGEDSINCE (RFC 7162 §3.1.3): uid 2 changed at 10 > 9 fails.
	ch, failed, err := a.StoreFlags(ctx, id, []uint32{2, 4}, Add, []string{`\Flagged`}, 9)
	if err != nil {
		t.Fatal(err)
	}
	step("unchangedsince changed", ch, "[{4 11 [$Label1 \\Flagged]}]")
	step("unchangedsince failed", failed, []uint32{2})
	ch, _, _ = a.StoreFlags(ctx, id, []uint32{2, 4}, Replace, []string{`\Draft`}, 0)
	step("replace", ch, "[{2 12 [\\Draft]} {4 12 [\\Draft]}]")
	ch, _, _ = a.StoreFlags(ctx, id, []uint32{2}, Remove, []string{`\Draft`, "nope"}, 0)
	step("remove", ch, "[{2 13 []}]")
	kws, _ := a.Keywords(ctx)
	step("keywords", kws, []string{"$Label1"})

	if _, _, err := a.StoreFlags(ctx, id, []uint32{2}, Add, []string{`\Bogus`}, 0); !errors.Is(err, ErrBadFlag) {
		t.Errorf("bad flag: %v", err)
	}
	if _, _, err := a.StoreFlags(ctx, id, []uint32{2}, Add, []string{`a(b`}, 0); !errors.Is(err, ErrBadFlag) {
		t.Errorf("bad keyword: %v", err)
	}
	if _, err := a.Changes(ctx, id, mb.UIDValidity+1, 0); !errors.Is(err, ErrUIDValidity) {
		t.Errorf("wrong UIDVALIDITY: %v", err)
	}
	if err := a.DeleteMailbox(ctx, "Test"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Changes(ctx, id, mb.UIDValidity, 0); !errors.Is(err, ErrUIDValidity) {
		t.Errorf("deleted mailbox: %v", err)
	}
}

// TestExpungeLog: expunge of a UID list only removes \Deleted ones and
// logs them forever with their MODSEQ.
func TestExpungeLog(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("a@x")
	for i := 1; i <= 5; i++ {
		e.appendMsg(a, "INBOX", testMsg(i))
	}
	id := e.mailbox(a, "INBOX").ID
	a.StoreFlags(ctx, id, []uint32{1, 2, 3, 4}, Add, []string{`\Deleted`}, 0) // modseq 7
	ex, err := a.Expunge(ctx, id, []uint32{2, 4, 5})                          // 5 lacks \Deleted; modseq 8
	if err != nil {
		t.Fatal(err)
	}
	eqUIDs(t, "UID EXPUNGE 2,4,5", ex, []uint32{2, 4})
	ex, _ = a.Expunge(ctx, id, nil) // modseq 9
	eqUIDs(t, "EXPUNGE", ex, []uint32{1, 3})
	ex, _ = a.Expunge(ctx, id, nil)
	eqUIDs(t, "EXPUNGE again", ex, nil)
	eqUIDs(t, "left", uidsOf(e.states(a, id)), []uint32{5})
	if n := e.blobCount(); n != 1 {
		t.Errorf("%d objects left, want 1", n)
	}
	e.reopen()
	a = e.account("a@x")
	rows, err := e.db.Query(`SELECT uid, modseq FROM expunged WHERE mailbox_id = ? ORDER BY uid`, id)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var u, m int
		rows.Scan(&u, &m)
		got = append(got, fmt.Sprintf("%d@%d", u, m))
	}
	rows.Close()
	if s := strings.Join(got, " "); s != "1@9 2@8 3@9 4@8" {
		t.Errorf("expunge log %s", s)
	}
	mb := e.mailbox(a, "INBOX")
	if mb.UIDNext != 6 || mb.HighestModSeq != 9 || mb.Messages != 1 {
		t.Errorf("mailbox %+v", mb)
	}
	// A new message never reuses an expunged UID.
	if r := e.appendMsg(a, "INBOX", testMsg(6)); r.UID != 6 {
		t.Errorf("new UID %d", r.UID)
	}
}

func TestCopySharesBlob(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("a@x")
	e.appendMsg(a, "INBOX", testMsg(1), `\Seen`, "Kw")
	e.appendMsg(a, "INBOX", testMsg(2))
	inbox := e.mailbox(a, "INBOX")
	res, err := a.Copy(ctx, inbox.ID, []uint32{1, 2, 7}, "Archive")
	if err != nil {
		t.Fatal(err)
	}
	arch := e.mailbox(a, "Archive")
	if fmt.Sprint(res) != fmt.Sprintf("{%d [1 2] [1 2]}", arch.UIDValidity) {
		t.Errorf("copy result %v", res)
	}
	if got := fmt.Sprint(e.states(a, arch.ID)); got != "[{1 2 [Kw \\Seen]} {2 2 []}]" {
		t.Errorf("archive states %s", got)
	}
	// Copy into the same mailbox is allowed (new UIDs).
	res, err = a.Copy(ctx, inbox.ID, []uint32{2}, "INBOX")
	if err != nil || fmt.Sprint(res.DstUIDs) != "[3]" {
		t.Fatalf("copy to self %v %v", res, err)
	}
	if n := e.blobCount(); n != 2 {
		t.Fatalf("%d objects after copy, want 2", n)
	}
	if got := e.body(a, arch.ID, 1); got != testMsg(1) {
		t.Errorf("copy body %q", got)
	}
	// Expunge the originals: the copies keep the objects.
	a.StoreFlags(ctx, inbox.ID, []uint32{1, 2}, Add, []string{`\Deleted`}, 0)
	a.Expunge(ctx, inbox.ID, nil)
	if n := e.blobCount(); n != 2 {
		t.Fatalf("%d objects after expunging originals, want 2", n)
	}
	if got := e.body(a, arch.ID, 2); got != testMsg(2) {
		t.Errorf("copy body after expunge %q", got)
	}
	// Expunge copy of message 1: its last reference goes, and so does the object.
	a.StoreFlags(ctx, arch.ID, []uint32{1}, Add, []string{`\Deleted`}, 0)
	a.Expunge(ctx, arch.ID, nil)
	if n := e.blobCount(); n != 1 {
		t.Fatalf("%d objects, want 1", n)
	}
	// Message 2 has two references left (Archive uid 2, INBOX uid 3).
	var refs int
	e.db.QueryRow(`SELECT refs FROM blobs`).Scan(&refs)
	if refs != 2 {
		t.Errorf("refs %d, want 2", refs)
	}
	if _, err := a.Copy(ctx, inbox.ID, []uint32{3}, "Nope"); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("copy to missing: %v", err)
	}
}

func TestMove(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("a@x")
	for i := 1; i <= 3; i++ {
		e.appendMsg(a, "INBOX", testMsg(i), `\Flagged`)
	}
	inbox := e.mailbox(a, "INBOX")
	if _, err := a.Move(ctx, inbox.ID, []uint32{1}, "inbox"); !errors.Is(err, ErrSameMailbox) {
		t.Errorf("move to self: %v", err)
	}
	if _, err := a.Move(ctx, inbox.ID, []uint32{1}, "Nope"); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("move to missing: %v", err)
	}
	if got := uidsOf(e.states(a, inbox.ID)); len(got) != 3 {
		t.Fatalf("failed move changed the source: %v", got)
	}
	res, err := a.Move(ctx, inbox.ID, []uint32{1, 3}, "Trash")
	if err != nil {
		t.Fatal(err)
	}
	trash := e.mailbox(a, "Trash")
	if fmt.Sprint(res) != fmt.Sprintf("{%d [1 3] [1 2]}", trash.UIDValidity) {
		t.Errorf("move result %v", res)
	}
	c, _ := a.Changes(ctx, inbox.ID, inbox.UIDValidity, 4)
	if got := renderChanges(c); got != "hms=5 next=4 vanished=[1 3]" {
		t.Errorf("source changes %s", got)
	}
	c, _ = a.Changes(ctx, trash.ID, trash.UIDValidity, 0)
	if got := renderChanges(c); got != "hms=2 next=3 1@2[\\Flagged] 2@2[\\Flagged] vanished=[]" {
		t.Errorf("dest changes %s", got)
	}
	if n := e.blobCount(); n != 3 {
		t.Errorf("%d objects, want 3", n)
	}
	if got := e.body(a, trash.ID, 2); got != testMsg(3) {
		t.Errorf("moved body %q", got)
	}
	var refs int
	e.db.QueryRow(`SELECT sum(refs) FROM blobs`).Scan(&refs)
	if refs != 3 {
		t.Errorf("total refs %d, want 3", refs)
	}
}

func TestRename(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("a@x")
	for _, n := range []string{"a/b/c", "a/bx", "ab"} {
		if _, err := a.CreateMailbox(ctx, n, ""); err != nil {
			t.Fatal(err)
		}
	}
	a.SetSubscribed(ctx, "a/b", true)
	a.SetSubscribed(ctx, "a/b/c", true)
	e.appendMsg(a, "a/b", testMsg(1))
	ab := e.mailbox(a, "a/b")

	if err := a.RenameMailbox(ctx, "a/b", "a/bx"); !errors.Is(err, ErrMailboxExists) {
		t.Errorf("rename onto existing: %v", err)
	}
	if err := a.RenameMailbox(ctx, "a/b", "a/b/c/d"); !errors.Is(err, ErrBadName) {
		t.Errorf("rename into own child: %v", err)
	}
	if err := a.RenameMailbox(ctx, "zz", "yy"); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("rename missing: %v", err)
	}
	if err := a.RenameMailbox(ctx, "a/b", "x/y"); err != nil {
		t.Fatal(err)
	}
	names := func() string {
		mbs, _ := a.Mailboxes(ctx)
		var out []string
		for _, m := range mbs {
			if m.SpecialUse == "" && m.Name != "INBOX" {
				out = append(out, m.Name)
			}
		}
		return strings.Join(out, ",")
	}
	if got := names(); got != "a,a/bx,ab,x,x/y,x/y/c" {
		t.Errorf("after rename: %s", got)
	}
	xy := e.mailbox(a, "x/y")
	if xy.ID != ab.ID || xy.GUID != ab.GUID || xy.UIDValidity != ab.UIDValidity || xy.Messages != 1 {
		t.Errorf("renamed mailbox %+v, was %+v", xy, ab)
	}
	subs, _ := a.Subscriptions(ctx)
	if got := strings.Join(subs, ","); got != "Archive,Drafts,INBOX,Junk,Sent,Trash,x/y,x/y/c" {
		t.Errorf("subscriptions %s", got)
	}
	// A target that is also a source: "x/y" → "x" while "x" exists fails;
	// after deleting "x", "x/y" → "x" moves "x/y/c" to "x/c".
	if err := a.RenameMailbox(ctx, "x/y", "x"); !errors.Is(err, ErrMailboxExists) {
		t.Errorf("rename onto parent: %v", err)
	}
	a.CreateMailbox(ctx, "p/p/p", "")
	a.DeleteMailbox(ctx, "p")
	if err := a.RenameMailbox(ctx, "p/p", "p"); err != nil {
		t.Fatalf("rename p/p to p: %v", err)
	}
	if got := names(); got != "a,a/bx,ab,p,p/p,x,x/y,x/y/c" {
		t.Errorf("after p/p→p: %s", got)
	}
	// A new mailbox with the old name gets a new UIDVALIDITY.
	nb, err := a.CreateMailbox(ctx, "a/b", "")
	if err != nil || nb.UIDValidity == ab.UIDValidity {
		t.Errorf("recreated %+v %v", nb, err)
	}
}

func TestRenameInbox(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("a@x")
	a.CreateMailbox(ctx, "INBOX/child", "")
	for i := 1; i <= 3; i++ {
		e.appendMsg(a, "INBOX", testMsg(i), `\Seen`)
	}
	inbox := e.mailbox(a, "INBOX")
	a.StoreFlags(ctx, inbox.ID, []uint32{1}, Add, []string{`\Deleted`}, 0) // modseq 5
	a.Expunge(ctx, inbox.ID, nil)                                          // modseq 6
	if err := a.RenameMailbox(ctx, "inbox", "Old/Mail"); err != nil {
		t.Fatal(err)
	}
	after := e.mailbox(a, "INBOX")
	if after.ID != inbox.ID || after.UIDValidity != inbox.UIDValidity || after.Messages != 0 || after.UIDNext != 4 || after.HighestModSeq != 7 {
		t.Errorf("INBOX after rename %+v", after)
	}
	c, _ := a.Changes(ctx, inbox.ID, inbox.UIDValidity, 6)
	if got := renderChanges(c); got != "hms=7 next=4 vanished=[2 3]" {
		t.Errorf("INBOX changes %s", got)
	}
	old := e.mailbox(a, "Old/Mail")
	if old.UIDValidity == inbox.UIDValidity || old.Messages != 2 {
		t.Errorf("new mailbox %+v", old)
	}
	if got := fmt.Sprint(e.states(a, old.ID)); got != "[{1 2 [\\Seen]} {2 2 [\\Seen]}]" {
		t.Errorf("moved states %s", got)
	}
	if got := e.body(a, old.ID, 2); got != testMsg(3) {
		t.Errorf("moved body %q", got)
	}
	for _, n := range []string{"INBOX/child", "Old"} {
		if _, err := a.Mailbox(ctx, n); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	if err := a.RenameMailbox(ctx, "INBOX", "Old/Mail"); !errors.Is(err, ErrMailboxExists) {
		t.Errorf("INBOX onto existing: %v", err)
	}
}

func TestDeleteMailboxFreesBlobs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("a@x")
	a.CreateMailbox(ctx, "Box/Child", "")
	e.appendMsg(a, "Box", testMsg(1))
	e.appendMsg(a, "Box", testMsg(2))
	box := e.mailbox(a, "Box")
	a.Copy(ctx, box.ID, []uint32{2}, "INBOX")
	if n := e.blobCount(); n != 2 {
		t.Fatalf("%d objects", n)
	}
	if err := a.DeleteMailbox(ctx, "INBOX"); !errors.Is(err, ErrInboxDelete) {
		t.Errorf("delete INBOX: %v", err)
	}
	if err := a.DeleteMailbox(ctx, "Box"); err != nil {
		t.Fatal(err)
	}
	if n := e.blobCount(); n != 1 {
		t.Errorf("%d objects after delete, want 1 (the copy's)", n)
	}
	if _, err := a.Mailbox(ctx, "Box/Child"); err != nil {
		t.Errorf("child after parent delete: %v", err)
	}
	if err := a.DeleteMailbox(ctx, "Box"); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("delete again: %v", err)
	}
	if _, err := a.States(ctx, box.ID); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("states of deleted: %v", err)
	}
	nb, _ := a.CreateMailbox(ctx, "Box", "")
	if nb.UIDValidity == box.UIDValidity || nb.ID == box.ID || nb.UIDNext != 1 {
		t.Errorf("recreated %+v, old %+v", nb, box)
	}
	c, _ := a.Changes(ctx, nb.ID, nb.UIDValidity, 0)
	if got := renderChanges(c); got != "hms=1 next=1 vanished=[]" {
		t.Errorf("recreated changes %s", got)
	}
}

// TestPutFailure: a failed blob Put commits nothing but the UID
// reservation; the error is temporary.
func TestPutFailure(t *testing.T) {
	e := newEnv(t)
	fb := &failingBlobs{Store: e.blobs}
	e.s.opts.Blobs = fb
	a := e.account("a@x")
	fb.fail.Store(true)
	in := e.spool(testMsg(1))
	defer in.Close()
	_, err := a.Append(context.Background(), "INBOX", in, nil, time.Time{})
	if !errors.Is(err, blob.ErrUnavailable) || !blob.IsTemporary(err) {
		t.Fatalf("append with failing store: %v", err)
	}
	inbox := e.mailbox(a, "INBOX")
	if inbox.Messages != 0 || inbox.HighestModSeq != 1 || inbox.UIDNext != 2 {
		t.Errorf("after failed put %+v", inbox)
	}
	var n int
	e.db.QueryRow(`SELECT (SELECT count(*) FROM messages) + (SELECT count(*) FROM blobs)`).Scan(&n)
	if n != 0 || e.blobCount() != 0 {
		t.Errorf("%d rows, %d objects after failed put", n, e.blobCount())
	}
	fb.fail.Store(false)
	r, err := a.Append(context.Background(), "INBOX", in, nil, time.Time{})
	if err != nil || r.UID != 2 || r.ModSeq != 2 {
		t.Errorf("append after recovery %+v %v", r, err)
	}
	if fb.puts.Load() != 2 {
		t.Errorf("%d puts", fb.puts.Load())
	}
}

// TestAppendToDeletedMailbox: a mailbox deleted between the Put and the
// index row leaves no row and no object.
func TestAppendErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("a@x")
	in := e.spool(testMsg(1))
	defer in.Close()
	if _, err := a.Append(ctx, "Nope", in, nil, time.Time{}); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("append to missing: %v", err)
	}
	if _, err := a.Append(ctx, "INBOX", in, []string{`\Recent`, `\Nope`}, time.Time{}); !errors.Is(err, ErrBadFlag) {
		t.Errorf("append with bad flag: %v", err)
	}
	r, err := a.Append(ctx, "INBOX", in, []string{`\Recent`, `\seen`}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(e.states(a, r.MailboxID)); got != "[{1 2 [\\Seen]}]" {
		t.Errorf("states %s (\\Recent must not be stored)", got)
	}
	in.Close()
	if _, err := a.Append(ctx, "INBOX", in, nil, time.Time{}); err == nil {
		t.Errorf("append of a closed Incoming succeeded")
	}
	if n := e.blobCount(); n != 1 {
		t.Errorf("%d objects, want 1", n)
	}
}

func TestWatch(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("a@x")
	other := e.account("b@x")
	c, stop := a.Watch()
	defer stop()
	oc, ostop := other.Watch()
	defer ostop()
	e.appendMsg(a, "INBOX", testMsg(1))
	e.appendMsg(a, "INBOX", testMsg(2))
	select {
	case <-c:
	case <-time.After(time.Second):
		t.Fatal("no wake-up after append")
	}
	select {
	case <-c:
		t.Fatal("two appends gave two wake-ups; they must coalesce")
	default:
	}
	select {
	case <-oc:
		t.Fatal("other account woken")
	default:
	}
	inbox := e.mailbox(a, "INBOX")
	a.StoreFlags(ctx, inbox.ID, []uint32{1}, Add, []string{`\Seen`}, 0)
	select {
	case <-c:
	case <-time.After(time.Second):
		t.Fatal("no wake-up after store")
	}
	stop()
	stop()
	e.appendMsg(a, "INBOX", testMsg(3)) // no panic, nobody listening
}

func TestDeleteAccount(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("a@x")
	b := e.account("b@x")
	e.appendMsg(a, "INBOX", testMsg(1))
	e.appendMsg(b, "INBOX", testMsg(2))
	old := e.mailbox(a, "INBOX")
	if err := e.s.DeleteAccount(ctx, "a@x"); err != nil {
		t.Fatal(err)
	}
	if n := e.blobCount(); n != 1 {
		t.Errorf("%d objects, want 1 (b's)", n)
	}
	if err := e.s.DeleteAccount(ctx, "a@x"); !errors.Is(err, ErrNoAccount) {
		t.Errorf("delete again: %v", err)
	}
	if got := e.body(b, e.mailbox(b, "INBOX").ID, 1); got != testMsg(2) {
		t.Errorf("b's body %q", got)
	}
	a = e.account("a@x")
	inbox := e.mailbox(a, "INBOX")
	if inbox.Messages != 0 || inbox.UIDValidity == old.UIDValidity {
		t.Errorf("recreated INBOX %+v, old %+v", inbox, old)
	}
}

// TestMoveAtomic: while a MOVE of many messages runs, a reader never sees
// a message in both mailboxes or in neither (one transaction).
func TestMoveAtomic(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.account("a@x")
	const n = 60
	var uids []uint32
	for i := 0; i < n; i++ {
		uids = append(uids, e.appendMsg(a, "INBOX", testMsg(i)).UID)
	}
	inbox, trash := e.mailbox(a, "INBOX"), e.mailbox(a, "Trash")
	done, stop := make(chan struct{}), make(chan struct{})
	bad := make(chan string, 1)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				if i > 0 {
					return
				}
			default:
			}
			tx, err := metadb.BeginRead(ctx, e.db) // one snapshot
			if err != nil {
				bad <- err.Error()
				return
			}
			var inN, trN, keys int
			tx.QueryRow(`SELECT count(*) FROM messages WHERE mailbox_id = ?`, inbox.ID).Scan(&inN)
			tx.QueryRow(`SELECT count(*) FROM messages WHERE mailbox_id = ?`, trash.ID).Scan(&trN)
			tx.QueryRow(`SELECT count(DISTINCT blob_key) FROM messages WHERE mailbox_id IN (?, ?)`, inbox.ID, trash.ID).Scan(&keys)
			tx.Rollback()
			if !(inN == n && trN == 0 || inN == 0 && trN == n) || keys != n {
				bad <- fmt.Sprintf("INBOX %d, Trash %d, distinct objects %d", inN, trN, keys)
				return
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	res, err := a.Move(ctx, inbox.ID, uids, "Trash")
	close(stop)
	<-done
	if err != nil || len(res.DstUIDs) != n {
		t.Fatalf("move: %d moved, %v", len(res.DstUIDs), err)
	}
	select {
	case s := <-bad:
		t.Fatalf("reader saw a half-done move: %s", s)
	default:
	}
}

// TestChangeHints: Options.OnChange receives, per committed write, the
// account, kind, mailbox GUID and the mailbox's HIGHESTMODSEQ after the
// change (a MOVE gives an expunge in the source and new mail in the
// destination); an expunge that drops an object's last reference names
// it in Gone.
func TestChangeHints(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var mu sync.Mutex
	var got []Change
	e.s.hub.onChange = func(c Change) {
		mu.Lock()
		got = append(got, c)
		mu.Unlock()
	}
	a := e.account("hints@x")
	inbox, trash := e.mailbox(a, "INBOX"), e.mailbox(a, "Trash")
	r1 := e.appendMsg(a, "INBOX", testMsg(1))
	e.appendMsg(a, "INBOX", testMsg(2))
	if _, _, err := a.StoreFlags(ctx, inbox.ID, []uint32{1, 2}, Add, []string{FlagDeleted}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Copy(ctx, inbox.ID, []uint32{2}, "Trash"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Move(ctx, trash.ID, []uint32{1}, "Archive"); err != nil {
		t.Fatal(err)
	}
	var key1 string
	if err := e.db.QueryRow(`SELECT blob_key FROM messages WHERE mailbox_id = ? AND uid = 1`, inbox.ID).Scan(&key1); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Expunge(ctx, inbox.ID, []uint32{1}); err != nil { // the object's last reference
		t.Fatal(err)
	}
	if _, err := a.Expunge(ctx, inbox.ID, nil); err != nil { // UID 2: its copy went to Archive, the object stays
		t.Fatal(err)
	}
	archive := e.mailbox(a, "Archive")
	if err := a.DeleteMailbox(ctx, "Archive"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var b strings.Builder
	for _, c := range got {
		g := map[string]string{inbox.GUID: "INBOX", trash.GUID: "Trash", archive.GUID: "Archive", "": "-"}[c.MailboxGUID]
		gone := fmt.Sprint(c.Gone)
		if len(c.Gone) == 1 && c.Gone[0] == key1 {
			gone = "[key of INBOX 1]"
		}
		fmt.Fprintf(&b, "%s %d %s %d gone=%s\n", c.Account, c.Kind, g, c.ModSeq, gone)
	}
	want := fmt.Sprintf(`hints@x %d - 0 gone=[]
hints@x %d INBOX 2 gone=[]
hints@x %d INBOX 3 gone=[]
hints@x %d INBOX 4 gone=[]
hints@x %d Trash 2 gone=[]
hints@x %d Trash 3 gone=[]
hints@x %d Archive 2 gone=[]
hints@x %d INBOX 5 gone=[key of INBOX 1]
hints@x %d INBOX 6 gone=[]
hints@x %d - 0 gone=[]
`, ChangeMailboxes, ChangeNewMail, ChangeNewMail, ChangeFlags, ChangeNewMail, ChangeExpunge, ChangeNewMail, ChangeExpunge, ChangeExpunge, ChangeMailboxes)
	if b.String() != want {
		t.Errorf("changes:\n%swant:\n%s", b.String(), want)
	}
	if r1.ModSeq != 2 {
		t.Errorf("first append MODSEQ %d, want 2", r1.ModSeq)
	}
}
