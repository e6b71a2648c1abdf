package mailstore

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	blobfs "github.com/bucketmail/bucketmail/internal/blob/fs"
	"github.com/bucketmail/bucketmail/internal/journal"
)

// jenv is a store with the journal on, over any blob store, whose data
// dir (index, spool) can be thrown away while the blobs stay.
type jenv struct {
	t        testing.TB
	dir      string
	blobs    blob.Store
	interval time.Duration
	snapshot int    // Options.SnapshotAfter
	dsn      string // newMetaDB; "" after a crash (a fresh database)
	db       *sql.DB
	s        *Store
}

func newJEnv(t testing.TB, blobs blob.Store, interval time.Duration, snapshotAfter int) *jenv {
	e := &jenv{t: t, dir: t.TempDir(), blobs: blobs, interval: interval, snapshot: snapshotAfter}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *jenv) open() {
	e.t.Helper()
	ctx := context.Background()
	if e.dsn == "" {
		e.dsn = newMetaDB(e.t, filepath.Join(e.dir, "data", "meta.db"))
	}
	db := openMetaDB(e.t, e.dsn)
	s, err := Open(ctx, Options{DB: db, Blobs: e.blobs, SpoolDir: filepath.Join(e.dir, "data", "spool"),
		JournalInterval: e.interval, SnapshotAfter: e.snapshot})
	if err != nil {
		e.t.Fatal(err)
	}
	e.db, e.s = db, s
}

func (e *jenv) close() {
	if e.s != nil {
		e.s.Close()
		e.db.Close()
		e.s, e.db = nil, nil
	}
}

// crash stops the store without the final flush and removes the whole
// data dir (index and spool): only the bucket is left.
func (e *jenv) crash() {
	e.t.Helper()
	if j := e.s.jrn; j != nil {
		j.stop()
		<-j.done
		e.s.jrn = nil
		e.s.hub.onPublish = nil
	}
	e.db.Close()
	e.s, e.db = nil, nil
	e.dsn = "" // the index is gone: the next open starts from an empty database
	if err := os.RemoveAll(filepath.Join(e.dir, "data")); err != nil {
		e.t.Fatal(err)
	}
}

func (e *jenv) account(name string) *Account {
	e.t.Helper()
	a, err := e.s.Account(context.Background(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

func (e *jenv) deliver(a *Account, mailbox, raw string, date time.Time, flags ...string) AppendResult {
	e.t.Helper()
	in, err := e.s.Spool(context.Background(), strings.NewReader(raw), true, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	defer in.Close()
	res, err := a.Append(context.Background(), mailbox, in, flags, date)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// dumpAccount renders everything a rebuild must restore: mailboxes (name,
// GUID, UIDVALIDITY, UIDNEXT, special-use, subscribed), subscriptions,
// keywords, and per message UID, flags, INTERNALDATE, size, object key
// and ENVELOPE/BODYSTRUCTURE.
func dumpAccount(t testing.TB, a *Account) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	mbs, err := a.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range mbs {
		fmt.Fprintf(&b, "mailbox %q guid=%s uidvalidity=%d uidnext=%d use=%q sub=%v n=%d\n",
			mb.Name, mb.GUID, mb.UIDValidity, mb.UIDNext, mb.SpecialUse, mb.Subscribed, mb.Messages)
		var uids []uint32
		for u := uint32(1); u < mb.UIDNext; u++ {
			uids = append(uids, u)
		}
		err := a.Messages(ctx, mb.ID, uids, func(m *Message) error {
			fmt.Fprintf(&b, "  uid=%d flags=%v date=%s size=%d key=%s env=%.60s bs=%.60s hdr=%d\n", m.UID, m.Flags,
				m.InternalDate.Format(time.RFC3339), m.Size, m.BlobKey, m.Envelope, m.BodyStructure, len(m.Header))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	subs, err := a.Subscriptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kws, err := a.Keywords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "subscriptions %q\nkeywords %q\n", subs, kws)
	return b.String()
}

// mutate runs the reindex scenario's changes on an account with at least
// 8 messages in INBOX (UIDs 1..8): flags and keywords, COPY, MOVE,
// EXPUNGE, create/rename (non-ASCII)/delete/subscribe.
func mutate(t testing.TB, a *Account) {
	t.Helper()
	ctx := context.Background()
	inbox, err := a.Mailbox(ctx, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, _, err = a.StoreFlags(ctx, inbox.ID, []uint32{1, 2, 3, 4, 5}, Add, []string{FlagSeen}, 0)
	must(err)
	_, _, err = a.StoreFlags(ctx, inbox.ID, []uint32{2}, Add, []string{"$Label1", "Projekt"}, 0)
	must(err)
	_, _, err = a.StoreFlags(ctx, inbox.ID, []uint32{3, 8}, Add, []string{FlagDeleted}, 0)
	must(err)
	_, err = a.Expunge(ctx, inbox.ID, nil)
	must(err)
	_, err = a.Copy(ctx, inbox.ID, []uint32{4, 5}, "Archive")
	must(err)
	_, err = a.CreateMailbox(ctx, "Ünïcödé/Sub", UseFlagged)
	must(err)
	must(a.SetSubscribed(ctx, "Ünïcödé/Sub", true))
	must(a.SetSubscribed(ctx, "Junk", false))
	_, err = a.Move(ctx, inbox.ID, []uint32{6, 7}, "Ünïcödé/Sub")
	must(err)
	must(a.RenameMailbox(ctx, "Ünïcödé/Sub", "Ärger/日本語"))
	arch, err := a.Mailbox(ctx, "Archive")
	must(err)
	_, _, err = a.StoreFlags(ctx, arch.ID, []uint32{1}, Replace, []string{FlagFlagged, "$Label2"}, 0)
	must(err)
	must(a.DeleteMailbox(ctx, "Drafts"))
	_, err = a.CreateMailbox(ctx, "Drafts", UseDrafts) // same name, new GUID
	must(err)
}

func msgDate(i int) time.Time {
	return time.Date(2023, 3, 1+i%27, i%24, 7, 9, 0, time.FixedZone("", (i%5-2)*3600))
}

// TestJournalReindexFS: the reindex scenario on the filesystem store:
// every change is in the bucket one flush interval later, except the
// last deliveries, whose objects describe themselves (one PUT per
// delivered message, no journal PUT of their own); a rebuild from the
// bucket alone restores the account exactly, with no GET of a message
// object the journal covers and one GET for each self-described one.
func TestJournalReindexFS(t *testing.T) {
	fsStore, err := blobfs.New(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	counting := &countingBlobs{Store: fsStore}
	e := newJEnv(t, counting, 50*time.Millisecond, 40)
	ctx := context.Background()
	a := e.account("alice@example.org")
	for i := 1; i <= 10; i++ {
		e.deliver(a, "INBOX", testMsg(i), msgDate(i))
	}
	e.deliver(a, "Drafts", testMsg(99), msgDate(99), FlagDraft)
	mutate(t, a)
	// Deliveries after the mutations, in a renamed mailbox; one with raw
	// 8-bit header bytes (not UTF-8), which the ENVELOPE keeps as they are.
	e.deliver(a, "Ärger/日本語", testMsg(11), msgDate(11), "$Neu")
	e.deliver(a, "Ärger/日本語", "From: J\xfcrgen <j@example.org>\r\nSubject: caf\xe9 \xff\r\n\r\nbody\r\n", msgDate(12))
	before := dumpAccount(t, a)
	if n := strings.Count(before, "  uid="); n != 12 || !strings.Contains(before, "caf\xe9 \xff") || !strings.Contains(before, `mailbox "Ärger/日本語"`) ||
		!strings.Contains(before, `"$Label1"`) {
		t.Fatalf("scenario state (%d messages):\n%s", n, before)
	}
	hmsBefore := map[string]uint64{}
	mbs, _ := a.Mailboxes(ctx)
	for _, mb := range mbs {
		hmsBefore[mb.GUID] = mb.HighestModSeq
	}
	puts := counting.puts.Load()
	time.Sleep(4 * e.interval) // one flush interval, and then some
	if n := counting.puts.Load() - puts; n != 0 {
		t.Errorf("%d PUTs after the last two deliveries' own, want 0 (self-described objects)", n)
	}
	e.crash()

	e.open()
	counting.reset()
	st, err := e.s.Reindex(ctx, "alice@example.org", false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Gets != 2 || counting.gets.Load() != 2 || st.Placed != 2 || st.Heads != 2 || len(st.NewValidity) != 0 {
		t.Errorf("reindex stats %+v; message GETs %d, want 2 placed from their objects", st, counting.gets.Load())
	}
	after := dumpAccount(t, e.account("alice@example.org"))
	if after != before {
		t.Errorf("state after reindex differs:\n--- before\n%s--- after\n%s", before, after)
	}
	// HIGHESTMODSEQ moved up by ModSeqGap; every message took it.
	a = e.account("alice@example.org")
	mbs, err = a.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range mbs {
		// Placed messages go above what the journal knew of their
		// mailbox; the others' mailboxes move by exactly ModSeqGap.
		if mb.Name == "Ärger/日本語" {
			if mb.HighestModSeq <= hmsBefore[mb.GUID] {
				t.Errorf("%s: HIGHESTMODSEQ %d, was %d: went back", mb.Name, mb.HighestModSeq, hmsBefore[mb.GUID])
			}
		} else if mb.HighestModSeq != hmsBefore[mb.GUID]+ModSeqGap {
			t.Errorf("%s: HIGHESTMODSEQ %d, was %d", mb.Name, mb.HighestModSeq, hmsBefore[mb.GUID])
		}
		for _, s := range e.statesOf(a, mb.ID) {
			if s.ModSeq != mb.HighestModSeq {
				t.Errorf("%s uid %d: MODSEQ %d, want %d", mb.Name, s.UID, s.ModSeq, mb.HighestModSeq)
			}
		}
	}
	// The rebuilt index serves bodies.
	mb, err := a.Mailbox(ctx, "Ärger/日本語")
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, a, mb.ID, 3); !strings.Contains(got, "Subject: test 11\r\n") {
		t.Errorf("body of uid 3: %q", got)
	}
}

// TestJournalLostFlush: deliveries whose flush never happened are placed
// from their object metadata with their UIDs (one GET each to re-parse);
// flag changes of the lost interval are gone; nothing else is.
func TestJournalLostFlush(t *testing.T) {
	fsStore, err := blobfs.New(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	e := newJEnv(t, fsStore, time.Hour, 40)
	ctx := context.Background()
	a := e.account("bob@example.org")
	for i := 1; i <= 4; i++ {
		e.deliver(a, "INBOX", testMsg(i), msgDate(i), "$Seen1")
	}
	inbox := func() Mailbox { mb, _ := a.Mailbox(ctx, "INBOX"); return mb }
	// Written within journalSoonDelay: the expunge (and with it
	// everything before).
	a.StoreFlags(ctx, inbox().ID, []uint32{2}, Add, []string{FlagDeleted}, 0)
	if _, err := a.Expunge(ctx, inbox().ID, nil); err != nil {
		t.Fatal(err)
	}
	waitJournalObjects(t, fsStore, "bob@example.org", 1)
	// Lost: a flag change and two deliveries.
	a.StoreFlags(ctx, inbox().ID, []uint32{1}, Add, []string{FlagAnswered}, 0)
	e.deliver(a, "INBOX", testMsg(5), msgDate(5), FlagSeen)
	e.deliver(a, "INBOX", testMsg(6), msgDate(6))
	uv := inbox().UIDValidity
	e.crash()

	e.open()
	st, err := e.s.Reindex(ctx, "bob@example.org", false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Placed != 2 || st.Gets != 2 || st.Heads != 2 || st.Skipped != 0 || len(st.NewValidity) != 0 {
		t.Errorf("stats %+v", st)
	}
	a = e.account("bob@example.org")
	mb := inbox()
	if mb.UIDValidity != uv || mb.UIDNext != 7 {
		t.Errorf("INBOX uidvalidity %d (was %d) uidnext %d", mb.UIDValidity, uv, mb.UIDNext)
	}
	var got []string
	a.Messages(ctx, mb.ID, []uint32{1, 2, 3, 4, 5, 6}, func(m *Message) error {
		got = append(got, fmt.Sprintf("%d %v %s", m.UID, m.Flags, m.InternalDate.Format(time.RFC3339)))
		return nil
	})
	want := []string{
		"1 [$Seen1] " + msgDate(1).Format(time.RFC3339),
		"3 [$Seen1] " + msgDate(3).Format(time.RFC3339),
		"4 [$Seen1] " + msgDate(4).Format(time.RFC3339),
		"5 [\\Seen] " + msgDate(5).Format(time.RFC3339),
		"6 [] " + msgDate(6).Format(time.RFC3339),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("messages:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A second rebuild reads the snapshot the first one wrote: no HEAD.
	e.crash()
	e.open()
	st, err = e.s.Reindex(ctx, "bob@example.org", true)
	if err != nil {
		t.Fatal(err)
	}
	if st.Snapshot == 0 || st.Heads != 0 || st.Messages != 5 {
		t.Errorf("second reindex (dry run) %+v", st)
	}
	// Dry run wrote nothing: the account is created afresh, empty.
	if n := inboxCount(t, e.account("bob@example.org")); n != 0 {
		t.Errorf("dry run left %d messages in INBOX", n)
	}
}

// TestJournalExpungedOrphan: an expunged message, or one in a deleted
// mailbox, whose object could not be deleted does not come back; a moved
// message appears once.
func TestJournalExpungedOrphan(t *testing.T) {
	fsStore, err := blobfs.New(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	nd := &noDeleteBlobs{Store: fsStore}
	e := newJEnv(t, nd, time.Hour, 40)
	ctx := context.Background()
	a := e.account("carol@example.org")
	for i := 1; i <= 3; i++ {
		e.deliver(a, "INBOX", testMsg(i), msgDate(i))
	}
	inbox, _ := a.Mailbox(ctx, "INBOX")
	nd.on.Store(true)
	a.StoreFlags(ctx, inbox.ID, []uint32{1}, Add, []string{FlagDeleted}, 0)
	if _, err := a.Expunge(ctx, inbox.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Move(ctx, inbox.ID, []uint32{2}, "Archive"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateMailbox(ctx, "Old", ""); err != nil {
		t.Fatal(err)
	}
	e.deliver(a, "Old", testMsg(4), msgDate(4))
	if err := a.DeleteMailbox(ctx, "Old"); err != nil {
		t.Fatal(err)
	}
	before := dumpAccount(t, a)
	// Twice: from the journal, then from the snapshot the first rebuild
	// wrote (it must repeat the deletion).
	for round := 1; round <= 2; round++ {
		e.crash()
		e.open()
		st, err := e.s.Reindex(ctx, "carol@example.org", false)
		if err != nil {
			t.Fatal(err)
		}
		if st.Skipped != 2 || st.Placed != 0 || st.Messages != 2 || (round == 2) != (st.Snapshot > 0) {
			t.Errorf("round %d: stats %+v", round, st)
		}
		if after := dumpAccount(t, e.account("carol@example.org")); after != before {
			t.Errorf("round %d: state differs:\n--- before\n%s--- after\n%s", round, before, after)
		}
	}
}

// TestJournalSnapshotCompaction: after SnapshotAfter records a snapshot
// replaces the journal objects it covers.
func TestJournalSnapshotCompaction(t *testing.T) {
	fsStore, err := blobfs.New(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	e := newJEnv(t, fsStore, time.Hour, 40)
	ctx := context.Background()
	a := e.account("dave@example.org")
	for i := 1; i <= 30; i++ {
		e.deliver(a, "INBOX", testMsg(i), msgDate(i))
	}
	inbox, _ := a.Mailbox(ctx, "INBOX")
	for i := 1; i <= 30; i++ {
		a.StoreFlags(ctx, inbox.ID, []uint32{uint32(i)}, Add, []string{FlagSeen}, 0)
		e.s.FlushJournal(ctx)
	}
	prefix := accountPrefix("dave@example.org")
	var kinds []string
	fsStore.List(ctx, prefix, func(at blob.Attrs) error {
		if k, seq, ok := journal.ParseKey(prefix, at.Key); ok {
			kinds = append(kinds, fmt.Sprintf("%s/%d", k, seq))
		}
		return nil
	})
	// seq 1: journal of everything so far (72 records); seq 2: snapshot
	// (72 >= SnapshotAfter 40); seqs 3..22: journals of 2 records each
	// (the mailbox, the message); seq 23: snapshot; 24..30: journals.
	// Listed in key order: journal/ before snapshot/.
	want := "[journal/24 journal/25 journal/26 journal/27 journal/28 journal/29 journal/30 snapshot/23]"
	if got := fmt.Sprint(kinds); got != want {
		t.Errorf("journal objects %s, want %s", got, want)
	}
	before := dumpAccount(t, a)
	e.crash()
	e.open()
	st, err := e.s.Reindex(ctx, "dave@example.org", false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Snapshot != 23 || st.Journals != 7 || st.Heads != 0 {
		t.Errorf("stats %+v", st)
	}
	if after := dumpAccount(t, e.account("dave@example.org")); after != before {
		t.Errorf("state differs:\n--- before\n%s--- after\n%s", before, after)
	}
}

func inboxCount(t testing.TB, a *Account) uint32 {
	mb, err := a.Mailbox(context.Background(), "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	return mb.Messages
}

// countingBlobs counts reads of message objects (".../msg/...") and
// PUTs of any object.
type countingBlobs struct {
	blob.Store
	gets atomic.Int64
	puts atomic.Int64
}

func (c *countingBlobs) Put(ctx context.Context, key string, r io.Reader, size int64, meta blob.Metadata) error {
	c.puts.Add(1)
	return c.Store.Put(ctx, key, r, size, meta)
}

func (c *countingBlobs) NewRangeReader(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if strings.Contains(key, "/msg/") {
		c.gets.Add(1)
	}
	return c.Store.NewRangeReader(ctx, key, off, n)
}

func (c *countingBlobs) reset() { c.gets.Store(0) }

// noDeleteBlobs fails every Delete of a message object while on is set
// (an orphan left behind).
type noDeleteBlobs struct {
	blob.Store
	on atomic.Bool
}

func (n *noDeleteBlobs) Delete(ctx context.Context, key string) error {
	if n.on.Load() && strings.Contains(key, "/msg/") {
		return fmt.Errorf("blob: delete %s: %w: injected", key, blob.ErrUnavailable)
	}
	return n.Store.Delete(ctx, key)
}

// readBody reads a whole (small) message through OpenBody.
func readBody(t testing.TB, a *Account, mailboxID int64, uid uint32) string {
	t.Helper()
	var out string
	err := a.Messages(context.Background(), mailboxID, []uint32{uid}, func(m *Message) error {
		rc, err := a.OpenBody(context.Background(), m, 0, -1)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc) // test-only: small messages
		out = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBucketAccounts: every account with objects is found by its key
// prefix, non-ASCII and over-long (hashed) names too; user records and
// other keys are not accounts.
func TestBucketAccounts(t *testing.T) {
	fsStore, err := blobfs.New(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	e := newJEnv(t, fsStore, time.Hour, 40)
	ctx := context.Background()
	long := strings.Repeat("ö", 150) + "@example.org"
	names := []string{"alice@example.org", "ünï@example.org", long, "msg-only@example.org"}
	for i, n := range names[:3] {
		a := e.account(n)
		e.deliver(a, "INBOX", testMsg(i), msgDate(i))
	}
	e.s.FlushJournal(ctx)
	// An account with message objects only (delivered without a journal).
	e.close()
	e.interval = 0
	e.open()
	e.deliver(e.account(names[3]), "INBOX", testMsg(9), msgDate(9))
	fsStore.Put(ctx, "accounts/alice=40example.org", strings.NewReader("{}"), 2, nil)
	got, err := BucketAccounts(ctx, fsStore)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(names)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("BucketAccounts = %q, want %q", got, want)
	}
}

// TestReindexWithoutJournal: mail stored with the journal off (import,
// or before the journal existed) is rebuilt from object metadata alone:
// same mailbox GUIDs, UIDVALIDITY, UIDs, INTERNALDATE and delivery
// flags; the default mailboxes with their special-use come back too.
func TestReindexWithoutJournal(t *testing.T) {
	fsStore, err := blobfs.New(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	e := newJEnv(t, fsStore, 0, 40)
	ctx := context.Background()
	a := e.account("erin@example.org")
	e.deliver(a, "INBOX", testMsg(1), msgDate(1))
	e.deliver(a, "INBOX", testMsg(2), msgDate(2), FlagSeen, "$Imported")
	e.deliver(a, "Sent", testMsg(3), msgDate(3), FlagSeen)
	want := map[string]string{}
	for _, n := range []string{"INBOX", "Sent"} {
		mb, _ := a.Mailbox(ctx, n)
		want[n] = fmt.Sprintf("%s %d %q n=%d next=%d", mb.GUID, mb.UIDValidity, mb.SpecialUse, mb.Messages, mb.UIDNext)
	}
	e.crash()
	e.open()
	st, err := e.s.Reindex(ctx, "erin@example.org", false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Placed != 3 || st.Heads != 3 || st.Gets != 3 || st.Mailboxes != 6 || st.Messages != 3 {
		t.Errorf("stats %+v", st)
	}
	a = e.account("erin@example.org")
	for _, n := range []string{"INBOX", "Sent"} {
		mb, _ := a.Mailbox(ctx, n)
		if got := fmt.Sprintf("%s %d %q n=%d next=%d", mb.GUID, mb.UIDValidity, mb.SpecialUse, mb.Messages, mb.UIDNext); got != want[n] {
			t.Errorf("%s: %s, want %s", n, got, want[n])
		}
	}
	mbs, _ := a.Mailboxes(ctx)
	var got []string
	for _, mb := range mbs {
		got = append(got, mb.Name+" "+mb.SpecialUse)
	}
	if w := "[Archive \\Archive Drafts \\Drafts INBOX  Junk \\Junk Sent \\Sent Trash \\Trash]"; fmt.Sprint(got) != w {
		t.Errorf("mailboxes %v, want %s", got, w)
	}
	inbox, _ := a.Mailbox(ctx, "INBOX")
	var msgs []string
	a.Messages(ctx, inbox.ID, []uint32{1, 2}, func(m *Message) error {
		msgs = append(msgs, fmt.Sprintf("%d %v %s", m.UID, m.Flags, m.InternalDate.Format(time.RFC3339)))
		return nil
	})
	if w := fmt.Sprintf("[1 [] %s 2 [$Imported \\Seen] %s]", msgDate(1).Format(time.RFC3339), msgDate(2).Format(time.RFC3339)); fmt.Sprint(msgs) != w {
		t.Errorf("INBOX %v, want %s", msgs, w)
	}
}

func (e *jenv) statesOf(a *Account, id int64) []MessageState {
	e.t.Helper()
	st, err := a.States(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// waitJournalObjects waits up to 5 s until account has n journal
// objects in the bucket.
func waitJournalObjects(t *testing.T, store blob.Store, account string, n int) {
	t.Helper()
	ctx := context.Background()
	var got int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		got = 0
		err := store.List(ctx, journal.AccountPrefix(account), func(at blob.Attrs) error {
			if strings.Contains(at.Key, "/journal/") {
				got++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got == n {
			return
		}
	}
	t.Fatalf("%s: %d journal objects after 5 s, want %d", account, got, n)
}
