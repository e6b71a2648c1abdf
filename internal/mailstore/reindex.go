package mailstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/journal"
)

// ReindexStats says what a rebuild found and did.
type ReindexStats struct {
	Account     string
	Snapshot    uint64 // seq of the snapshot used (0: none)
	Journals    int    // journal objects replayed
	Objects     int    // message objects listed
	Mailboxes   int
	Messages    int
	Placed      int      // messages placed from their object metadata (HEAD)
	Heads       int      // HEAD requests made
	Gets        int      // message objects downloaded (index data missing from the journal)
	Missing     int      // journal records whose object is gone (dropped)
	Skipped     int      // objects the journal proves expunged or moved (not placed)
	NewValidity []string // mailboxes that got a new UIDVALIDITY (their UIDs could not be proven)
}

// ModSeqGap is how far a rebuild moves each mailbox's HIGHESTMODSEQ
// (RFC 7162) past what the bucket records: far more changes than one
// flush interval can hold.
const ModSeqGap = 1 << 20

// ErrNothingInBucket: the bucket holds no object of the account.
var ErrNothingInBucket = errors.New("mailstore: account has nothing in the bucket")

// rmbox is a mailbox being rebuilt.
type rmbox struct {
	mb       journal.Mailbox
	msgs     map[uint32]*journal.MessageRec
	proven   bool // named by a snapshot or journal (UIDNEXT proven)
	conflict bool // UIDs cannot be proven: new UIDVALIDITY
	extra    []*journal.MessageRec
}

// Reindex rebuilds account's index rows from the bucket alone (DESIGN
// §3): the newest snapshot, the journal objects after it, and a HEAD of
// each message object they do not cover (its metadata places it). No
// message body is downloaded unless a placed object's index data is in no
// journal (its delivery's flush was lost): then one GET re-parses it.
//
// The account's rows are replaced in one transaction (dryRun: nothing is
// written). UIDs and UIDVALIDITY are kept where the bucket proves them;
// a mailbox where two objects claim one UID, or an object claims a
// UIDVALIDITY the mailbox never had, gets a new UIDVALIDITY and UIDs
// 1..n in the old order. An object whose UID is below the mailbox's
// Committed bound in the journal (every UID below it was journaled as a
// message or expunged) that no record places was expunged or moved and
// is not placed; one at or above it is placed with its UID.
// Every mailbox's HIGHESTMODSEQ moves up by ModSeqGap and every message
// takes it as its MODSEQ (clients resynchronise flags; the expunge log
// starts empty). Afterwards a fresh snapshot is written. ErrNothingInBucket when the
// bucket has no object of the account.
func (s *Store) Reindex(ctx context.Context, account string, dryRun bool) (ReindexStats, error) {
	st, err := s.reindex(ctx, account, dryRun)
	if err != nil {
		return st, fmt.Errorf("mailstore: reindex %s: %w", account, err)
	}
	return st, nil
}

func (s *Store) reindex(ctx context.Context, account string, dryRun bool) (ReindexStats, error) {
	st := ReindexStats{Account: account}
	prefix := accountPrefix(account)
	objects := map[string]blob.Attrs{}
	var journals []uint64
	var snapshots []uint64
	err := s.opts.Blobs.List(ctx, prefix, func(a blob.Attrs) error {
		if kind, seq, ok := journal.ParseKey(prefix, a.Key); ok {
			if kind == journal.KindJournal {
				journals = append(journals, seq)
			} else {
				snapshots = append(snapshots, seq)
			}
			return nil
		}
		if strings.HasPrefix(a.Key, prefix+"msg/") {
			objects[a.Key] = a
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	st.Objects = len(objects)
	if len(objects) == 0 && len(journals) == 0 && len(snapshots) == 0 {
		return st, ErrNothingInBucket
	}
	sort.Slice(journals, func(i, j int) bool { return journals[i] < journals[j] })
	sort.Slice(snapshots, func(i, j int) bool { return snapshots[i] < snapshots[j] })

	mboxes := map[string]*rmbox{}
	deleted := map[string]bool{} // mailbox GUIDs the journal says are deleted
	subs := map[string]bool{}
	blobs := map[string]*journal.BlobIndex{}
	var nextUV uint32
	var maxSeq uint64
	apply := func(h journal.Header, r journal.Record) error {
		switch r.T {
		case journal.TMailbox:
			if r.Mailbox == nil {
				return nil
			}
			m := mboxes[r.Mailbox.GUID]
			if m == nil {
				m = &rmbox{msgs: map[uint32]*journal.MessageRec{}}
				mboxes[r.Mailbox.GUID] = m
			}
			m.mb = *r.Mailbox
			m.proven = true
		case journal.TMailboxGo:
			delete(mboxes, r.GUID)
			deleted[r.GUID] = true
		case journal.TSub:
			subs[r.Name] = true
		case journal.TUnsub:
			delete(subs, r.Name)
		case journal.TBlob:
			if r.Blob != nil {
				blobs[r.Blob.Key] = r.Blob
			}
		case journal.TMessage:
			if r.Message == nil {
				return nil
			}
			if m := mboxes[r.Message.GUID]; m != nil {
				m.msgs[r.Message.UID] = r.Message
			}
		case journal.TExpunge:
			if m := mboxes[r.GUID]; m != nil {
				for _, u := range r.UIDs {
					delete(m.msgs, u)
				}
			}
		}
		return nil
	}
	var snapSeq uint64
	for i := len(snapshots) - 1; i >= 0; i-- {
		h, err := journal.Read(ctx, s.opts.Blobs, journal.Key(prefix, journal.KindSnapshot, snapshots[i]), apply)
		if err == nil {
			snapSeq = snapshots[i]
			nextUV = max(nextUV, h.NextUIDValidity)
			break
		}
		if !errors.Is(err, journal.ErrFormat) && !errors.Is(err, blob.ErrNotFound) {
			return st, err
		}
		s.log.Warn("mailstore: reindex: unreadable snapshot; trying an older one", "account", account, "seq", snapshots[i], "err", err)
		clear(mboxes)
		clear(deleted)
		clear(subs)
		clear(blobs)
	}
	st.Snapshot = snapSeq
	maxSeq = snapSeq
	for _, seq := range journals {
		maxSeq = max(maxSeq, seq)
		if seq <= snapSeq {
			continue
		}
		h, err := journal.Read(ctx, s.opts.Blobs, journal.Key(prefix, journal.KindJournal, seq), apply)
		if errors.Is(err, blob.ErrNotFound) {
			continue // pruned meanwhile
		}
		if err != nil {
			return st, err
		}
		nextUV = max(nextUV, h.NextUIDValidity)
		st.Journals++
	}
	if len(snapshots) > 0 {
		maxSeq = max(maxSeq, snapshots[len(snapshots)-1])
	}

	// Drop records whose object is gone; note which objects are covered.
	covered := map[string]bool{}
	for _, m := range mboxes {
		for uid, r := range m.msgs {
			if _, ok := objects[r.Key]; !ok {
				delete(m.msgs, uid)
				st.Missing++
				continue
			}
			covered[r.Key] = true
		}
	}

	// Objects no record covers: their metadata places them.
	keys := make([]string, 0, len(objects))
	for k := range objects {
		if !covered[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	heads, err := s.statAll(ctx, keys)
	st.Heads = len(keys)
	if err != nil {
		return st, err
	}
	now := time.Now()
	for i, k := range keys {
		a := heads[i]
		if a.Key == "" {
			continue // gone meanwhile
		}
		pm, err := parseBlobMeta(a.Meta)
		if err != nil {
			s.log.Warn("mailstore: reindex: object metadata unusable; left for fsck", "key", k, "err", err)
			continue
		}
		if deleted[pm.guid] {
			st.Skipped++ // its mailbox was deleted; the object's delete failed
			continue
		}
		m := mboxes[pm.guid]
		if m == nil {
			name := pm.mailbox
			if name == "" {
				name = "Recovered/" + pm.guid[:8]
			}
			m = &rmbox{mb: journal.Mailbox{GUID: pm.guid, Name: name, UIDValidity: pm.uidValidity, UIDNext: 1, HighestModSeq: 1},
				msgs: map[uint32]*journal.MessageRec{}}
			mboxes[pm.guid] = m
		}
		rec := &journal.MessageRec{GUID: pm.guid, UID: pm.uid, Key: k, Flags: pm.flags,
			InternalDate: pm.date.Unix(), InternalTZ: int64(zoneOffset(pm.date)), SaveDate: now.Unix()}
		switch {
		case m.proven && pm.uidValidity == m.mb.UIDValidity && pm.uid < m.mb.Committed:
			st.Skipped++ // expunged or moved: the journal knew this UID
			continue
		case pm.uidValidity != m.mb.UIDValidity || m.msgs[pm.uid] != nil || pm.uid == 0:
			m.conflict = true
			m.extra = append(m.extra, rec)
		default:
			m.msgs[pm.uid] = rec
		}
		st.Placed++
		if blobs[k] == nil {
			bi, err := s.reparse(ctx, k, a.Size)
			if err != nil {
				return st, err
			}
			st.Gets++
			blobs[k] = bi
		}
	}

	// Index data no record carried (not expected: every object's Blob
	// record precedes its first Message record): parse the object again.
	for _, m := range mboxes {
		for _, r := range m.msgs {
			if blobs[r.Key] != nil {
				continue
			}
			bi, err := s.reparse(ctx, r.Key, objects[r.Key].Size)
			if err != nil {
				return st, err
			}
			st.Gets++
			blobs[r.Key] = bi
		}
	}

	// Final mailbox states.
	var list []*rmbox
	for _, m := range mboxes {
		list = append(list, m)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].mb.Name < list[j].mb.Name })
	names := map[string]bool{}
	for _, m := range list {
		nextUV = max(nextUV, m.mb.UIDValidity+1)
		if names[m.mb.Name] {
			m.mb.Name += "-" + m.mb.GUID[:8]
		}
		names[m.mb.Name] = true
	}
	nextUV = max(nextUV, uint32(min(now.Unix(), 0xfffffffe)))
	takeUV := func() uint32 { v := nextUV; nextUV++; return v }
	// Without any journal (mail delivered or imported with the journal
	// off), the account gets its default mailboxes as a new one would;
	// INBOX in any case.
	noJournal := snapSeq == 0 && len(journals) == 0
	for _, d := range DefaultMailboxes {
		if noJournal && names[d.Name] {
			for _, m := range list {
				if m.mb.Name == d.Name && m.mb.SpecialUse == "" {
					m.mb.SpecialUse = d.SpecialUse
				}
			}
			subs[d.Name] = true
		}
		if names[d.Name] || (d.Name != "INBOX" && !noJournal) {
			continue
		}
		names[d.Name] = true
		m := &rmbox{mb: journal.Mailbox{GUID: newGUID(), Name: d.Name, UIDValidity: takeUV(), UIDNext: 1, HighestModSeq: 1,
			SpecialUse: d.SpecialUse}, msgs: map[uint32]*journal.MessageRec{}}
		list = append(list, m)
		if noJournal {
			subs[d.Name] = true
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].mb.Name < list[j].mb.Name })
	for _, m := range list {
		if m.conflict {
			all := make([]*journal.MessageRec, 0, len(m.msgs)+len(m.extra))
			for _, r := range m.msgs {
				all = append(all, r)
			}
			all = append(all, m.extra...)
			sort.SliceStable(all, func(i, j int) bool {
				if all[i].UID != all[j].UID {
					return all[i].UID < all[j].UID
				}
				return all[i].Key < all[j].Key
			})
			m.msgs = map[uint32]*journal.MessageRec{}
			for i, r := range all {
				r.UID = uint32(i + 1)
				m.msgs[r.UID] = r
			}
			m.mb.UIDValidity = takeUV()
			m.mb.UIDNext = uint32(len(all) + 1)
			st.NewValidity = append(st.NewValidity, m.mb.Name)
		}
		var maxMod uint64
		for uid, r := range m.msgs {
			m.mb.UIDNext = max(m.mb.UIDNext, uid+1)
			maxMod = max(maxMod, r.ModSeq)
		}
		// The bucket may lack the last interval's changes, which clients
		// may have seen with MODSEQs above the journaled ones: the
		// mailbox's HIGHESTMODSEQ jumps by ModSeqGap and every message
		// takes it, so CONDSTORE/QRESYNC clients fetch every message's
		// flags again, and later changes are above any MODSEQ a client
		// can hold.
		m.mb.HighestModSeq = max(m.mb.HighestModSeq, maxMod) + ModSeqGap
		for _, r := range m.msgs {
			r.ModSeq = m.mb.HighestModSeq
		}
		st.Mailboxes++
		st.Messages += len(m.msgs)
	}
	if dryRun {
		return st, nil
	}
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		return s.writeRebuilt(ctx, tx, account, list, deleted, subs, blobs, nextUV, maxSeq)
	})
	if err != nil {
		return st, err
	}
	s.hub.publish(Change{Account: account, Kind: ChangeMailboxes})
	// A fresh snapshot: the next rebuild reads one object, not the HEADs.
	if err := s.flushAccount(ctx, account, true); err != nil {
		s.log.Warn("mailstore: reindex: snapshot failed (the index is rebuilt)", "account", account, "err", err)
	}
	return st, nil
}

// writeRebuilt replaces the account's rows with the rebuilt state.
func (s *Store) writeRebuilt(ctx context.Context, tx *sql.Tx, account string, list []*rmbox, deleted, subs map[string]bool,
	blobs map[string]*journal.BlobIndex, nextUV uint32, maxSeq uint64) error {
	var id int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM accounts WHERE name = ?`, account).Scan(&id)
	switch {
	case err == nil:
		for _, q := range []string{`DELETE FROM mailboxes WHERE account_id = ?`, `DELETE FROM blobs WHERE account_id = ?`,
			`DELETE FROM keywords WHERE account_id = ?`, `DELETE FROM subscriptions WHERE account_id = ?`,
			`DELETE FROM journal_mailboxes WHERE account_id = ?`, `DELETE FROM journal_subs WHERE account_id = ?`,
			`DELETE FROM journal_accounts WHERE account_id = ?`} {
			if _, err := tx.ExecContext(ctx, q, id); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET next_uidvalidity = max(next_uidvalidity, ?) WHERE id = ?`, nextUV, id); err != nil {
			return err
		}
	case errors.Is(err, sql.ErrNoRows):
		if err := tx.QueryRowContext(ctx, `INSERT INTO accounts (name, next_uidvalidity, created) VALUES (?, ?, ?) RETURNING id`,
			account, nextUV, time.Now().Unix()).Scan(&id); err != nil {
			return err
		}
	default:
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO journal_accounts (account_id, seq, snapshot_seq, since_snapshot) VALUES (?, ?, 0, 0)`,
		id, maxSeq); err != nil {
		return err
	}
	for g := range deleted {
		if _, err := tx.ExecContext(ctx, `INSERT INTO journal_mailboxes (guid, account_id, name, uidvalidity, special_use, modseq, deleted)
			VALUES (?, ?, '', 0, '', 0, 1) ON CONFLICT (guid) DO UPDATE SET deleted = 1`, g, id); err != nil {
			return err
		}
	}
	for n := range subs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO subscriptions (account_id, name) VALUES (?, ?)`, id, n); err != nil {
			return err
		}
	}
	refs := map[string]int{}
	for _, m := range list {
		for _, r := range m.msgs {
			refs[r.Key]++
		}
	}
	for k, n := range refs {
		b := blobs[k]
		if _, err := tx.ExecContext(ctx, `INSERT INTO blobs (key, account_id, refs, size, sha256) VALUES (?, ?, ?, ?, ?)`,
			k, id, n, b.Size, b.SHA256); err != nil {
			return err
		}
	}
	kwSeen := map[string]bool{}
	now := time.Now().Unix()
	for _, m := range list {
		var mid int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO mailboxes (account_id, guid, name, uidvalidity, uidnext, highestmodseq, special_use, created)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, id, m.mb.GUID, m.mb.Name, m.mb.UIDValidity, m.mb.UIDNext,
			m.mb.HighestModSeq, m.mb.SpecialUse, now).Scan(&mid); err != nil {
			return err
		}
		uids := make([]uint32, 0, len(m.msgs))
		for u := range m.msgs {
			uids = append(uids, u)
		}
		sort.Slice(uids, func(i, j int) bool { return uids[i] < uids[j] })
		for _, u := range uids {
			r := m.msgs[u]
			b := blobs[r.Key]
			bits, kws, err := parseFlags(r.Flags)
			if err != nil {
				bits, kws = 0, nil
			}
			for _, k := range kws {
				if l := strings.ToLower(k); !kwSeen[l] {
					kwSeen[l] = true
					if _, err := tx.ExecContext(ctx, `INSERT INTO keywords (account_id, lname, name) VALUES (?, ?, ?)`, id, l, k); err != nil {
						return err
					}
				}
			}
			sort.Strings(kws)
			var date sql.NullInt64
			if b.Date != nil {
				date = sql.NullInt64{Int64: *b.Date, Valid: true}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO messages (mailbox_id, uid, blob_key, flags, keywords, modseq,
				internal_date, internal_tz, save_date, size, sha256, envelope, bodystructure, body, structure, header,
				subject, from_addr, to_addr, cc_addr, bcc_addr, date, message_id)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				mid, u, r.Key, bits, strings.Join(kws, " "), r.ModSeq, r.InternalDate, r.InternalTZ, r.SaveDate,
				b.Size, b.SHA256, s.anyBytes(string(b.Envelope)), s.anyBytes(string(b.BodyStructure)), s.anyBytes(string(b.Body)),
				nonNil(b.Structure), nonNil(b.Header), s.anyBytes(string(b.Subject)), s.anyBytes(string(b.From)),
				s.anyBytes(string(b.To)), s.anyBytes(string(b.Cc)), s.anyBytes(string(b.Bcc)), date, s.anyBytes(string(b.MessageID))); err != nil {
				return err
			}
		}
	}
	return nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func zoneOffset(t time.Time) int {
	_, off := t.Zone()
	return off
}

// reindexWorkers bounds the HEAD requests a rebuild has in flight.
const reindexWorkers = 16

// statAll HEADs keys with bounded concurrency; out[i] is keys[i]'s
// attributes, zero if it is gone.
func (s *Store) statAll(ctx context.Context, keys []string) ([]blob.Attrs, error) {
	out := make([]blob.Attrs, len(keys))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  atomic.Int64
	)
	for w := 0; w < min(reindexWorkers, len(keys)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(keys) || ctx.Err() != nil {
					return
				}
				a, err := s.opts.Blobs.Stat(ctx, keys[i])
				if err != nil && !errors.Is(err, blob.ErrNotFound) {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					cancel()
					return
				}
				if err == nil {
					a.Key = keys[i]
					out[i] = a
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return out, ctx.Err()
}

// reparse downloads a message object and computes its index data (the
// fallback when no journal holds it).
func (s *Store) reparse(ctx context.Context, key string, size int64) (*journal.BlobIndex, error) {
	rc, err := s.opts.Blobs.NewRangeReader(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	in, err := s.spool(ctx, rc, false, 0)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	d := in.idx
	bi := &journal.BlobIndex{Key: key, Size: in.Size, SHA256: in.SHA256[:], Envelope: journal.Text(d.envelope),
		BodyStructure: journal.Text(d.bodyStructure), Body: journal.Text(d.body), Structure: d.structure, Header: d.header,
		Subject: journal.Text(d.subject), From: journal.Text(d.from), To: journal.Text(d.to), Cc: journal.Text(d.cc),
		Bcc: journal.Text(d.bcc), MessageID: journal.Text(d.messageID)}
	if d.date.Valid {
		v := d.date.Int64
		bi.Date = &v
	}
	return bi, nil
}

// placement is what an object's metadata says (blobMeta).
type placement struct {
	guid, mailbox    string
	uidValidity, uid uint32
	date             time.Time
	flags            []string
}

var errBadMeta = errors.New("bad object metadata")

// parseBlobMeta reads the required fields blobMeta wrote.
func parseBlobMeta(m blob.Metadata) (placement, error) {
	var p placement
	if m["v"] != BlobFormat {
		return p, fmt.Errorf("%w: format %q", errBadMeta, m["v"])
	}
	p.guid = m["mailbox-guid"]
	if _, err := hex.DecodeString(p.guid); err != nil || len(p.guid) != 32 {
		return p, fmt.Errorf("%w: mailbox-guid %q", errBadMeta, p.guid)
	}
	uv, err1 := strconv.ParseUint(m["uidvalidity"], 10, 32)
	uid, err2 := strconv.ParseUint(m["uid"], 10, 32)
	d, err3 := time.Parse(time.RFC3339, m["internaldate"])
	if err := errors.Join(err1, err2, err3); err != nil {
		return p, fmt.Errorf("%w: %w", errBadMeta, err)
	}
	p.uidValidity, p.uid, p.date = uint32(uv), uint32(uid), d
	if f, ok := unMetaValue(m["flags"]); f != "" {
		p.flags = strings.Fields(f)
		if !ok && len(p.flags) > 0 {
			p.flags = p.flags[:len(p.flags)-1] // the cut one
		}
	}
	if _, _, err := parseFlags(p.flags); err != nil {
		p.flags = nil
	}
	if name, ok := unMetaValue(m["mailbox"]); ok {
		if n, err := normName(name); err == nil {
			p.mailbox = n
		}
	}
	return p, nil
}

// unMetaValue reverses metaValue. complete is false when the value was
// cut (it ends in the "%..." marker; the rest is returned).
func unMetaValue(v string) (s string, complete bool) {
	v, cut := strings.CutSuffix(v, "%...")
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '%' && i+2 < len(v) {
			if x, err := strconv.ParseUint(v[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(x))
				i += 2
				continue
			}
		}
		b.WriteByte(v[i])
	}
	return b.String(), !cut
}

// BucketAccounts lists the accounts that have objects in store: the
// names behind every "<hash>/<account>/" prefix (a long, hashed segment
// is named by its journal header or a message's metadata).
func BucketAccounts(ctx context.Context, store blob.Store) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	var pending []string // hashed segments: first key of each
	err := store.List(ctx, "", func(a blob.Attrs) error {
		hash, rest, ok := strings.Cut(a.Key, "/")
		if !ok || len(hash) != 4 {
			return nil
		}
		seg, _, ok := strings.Cut(rest, "/")
		if !ok {
			return nil
		}
		p := hash + "/" + seg + "/"
		if seen[p] {
			return nil
		}
		seen[p] = true
		if strings.Contains(seg, "==") {
			pending = append(pending, a.Key)
			return nil
		}
		if name, ok := decodeSegment(seg); ok && accountPrefix(name) == p {
			out = append(out, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mailstore: bucket accounts: %w", err)
	}
	for _, k := range pending {
		if _, _, ok := strings.Cut(k, "/journal/"); ok || strings.Contains(k, "/snapshot/") {
			h, err := journal.Read(ctx, store, k, func(journal.Header, journal.Record) error { return errStop })
			if (err == nil || errors.Is(err, errStop)) && h.Account != "" {
				out = append(out, h.Account)
			}
			continue
		}
		a, err := store.Stat(ctx, k)
		if err != nil {
			continue
		}
		if name, ok := unMetaValue(a.Meta["account"]); ok {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

var errStop = errors.New("stop")

// decodeSegment reverses accountSegment for segments that were not cut.
func decodeSegment(seg string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(seg); i++ {
		if seg[i] == '=' {
			if i+2 >= len(seg) {
				return "", false
			}
			x, err := strconv.ParseUint(seg[i+1:i+3], 16, 8)
			if err != nil {
				return "", false
			}
			b.WriteByte(byte(x))
			i += 2
			continue
		}
		b.WriteByte(seg[i])
	}
	return b.String(), true
}
