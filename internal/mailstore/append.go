package mailstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/oklog/ulid/v2"
)

// BlobFormat is the "v" metadata value of message objects written now:
// the object is the message bytes exactly as received (after the
// optional bare-LF → CRLF conversion), uncompressed.
const BlobFormat = "1"

// blobMeta builds an object's metadata (DESIGN §3). Required fields come
// first and always fit (about 400 bytes at most); hints (Message-ID,
// Subject, From, To, Date; raw header values, non-ASCII %XX-encoded,
// each cut to 300 bytes with a "%..." marker; first the mailbox name at
// delivery, which a rebuild uses when no journal names the mailbox) are
// added while the set stays within blob.MaxMetadataBytes.
//
//	v             format version (BlobFormat)
//	account       account name (%XX-encoded outside printable ASCII)
//	mailbox-guid  GUID of the mailbox at delivery
//	uidvalidity   UIDVALIDITY of that mailbox (decimal)
//	uid           UID reserved for the message (decimal; see seq.go)
//	internaldate  INTERNALDATE, RFC 3339 with the zone offset
//	flags         flags at delivery, space-separated (cut at 400 bytes)
//	size          RFC822.SIZE in bytes (decimal)
//	sha256        SHA-256 of the bytes (64 hex digits)
func blobMeta(account string, mb Mailbox, uid uint32, in *Incoming, flags []string, date time.Time) blob.Metadata {
	m := blob.Metadata{
		"v":            BlobFormat,
		"account":      metaValue(account, 300),
		"mailbox-guid": mb.GUID,
		"uidvalidity":  strconv.FormatUint(uint64(mb.UIDValidity), 10),
		"uid":          strconv.FormatUint(uint64(uid), 10),
		"internaldate": date.Format(time.RFC3339),
		"flags":        metaValue(strings.Join(flags, " "), 400),
		"size":         strconv.FormatInt(in.Size, 10),
		"sha256":       hex.EncodeToString(in.SHA256[:]),
	}
	if in.idx == nil {
		return m
	}
	total := 0
	for k, v := range m {
		total += len(k) + len(v)
	}
	for _, h := range []struct{ k, v string }{
		{"mailbox", mb.Name}, {"message-id", in.idx.messageID}, {"subject", in.idx.rawSubject},
		{"from", in.idx.rawFrom}, {"to", in.idx.rawTo}, {"date", in.idx.rawDate},
	} {
		if h.v == "" {
			continue
		}
		v := metaValue(h.v, 300)
		if total+len(h.k)+len(v) > blob.MaxMetadataBytes {
			continue
		}
		m[h.k] = v
		total += len(h.k) + len(v)
	}
	return m
}

func (a *Account) appendMsg(ctx context.Context, mailbox string, in *Incoming, flags []string, internalDate time.Time) (AppendResult, error) {
	s := a.s
	name, err := normName(mailbox)
	if err != nil {
		return AppendResult{}, fmt.Errorf("mailstore: append %q: %w", mailbox, err)
	}
	fail := func(err error) (AppendResult, error) {
		return AppendResult{}, fmt.Errorf("mailstore: append %q: %w", name, err)
	}
	if in == nil || !in.spooled || in.idx == nil {
		return fail(errors.New("incoming message closed or not spooled"))
	}
	bits, kws, err := parseFlags(flags)
	if err != nil {
		return fail(err)
	}
	if internalDate.IsZero() {
		internalDate = time.Now()
	}
	internalDate = internalDate.Truncate(time.Second)

	mb, err := a.mailboxByName(ctx, s.db, name)
	if err != nil {
		return fail(err)
	}

	// 1. Reserve a UID (committed), in chain order. The sequencer lock
	// is let go as soon as the reservation and its ticket are in the
	// (group) transaction, so that the next Append of this mailbox can
	// reserve in the same commit (commit.go); ticket order is still the
	// order of the UPDATEs, which is UID order.
	q := s.seqFor(mb.ID)
	if err := q.lock(ctx); err != nil {
		return fail(err)
	}
	var uid uint32
	var t *ticket
	unlocked := false
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		err := s.pq(tx).QueryRowContext(ctx, `UPDATE mailboxes SET uidnext = uidnext + 1
			WHERE id = ? AND account_id = ? RETURNING uidnext - 1, uidvalidity`, mb.ID, a.id).Scan(&uid, &mb.UIDValidity)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoMailbox
		}
		if err != nil {
			return err
		}
		t = q.next()
		unlocked = true
		q.unlock()
		return nil
	})
	if !unlocked {
		q.unlock()
	}
	if err != nil {
		if t != nil {
			t.release()
		}
		return fail(err)
	}
	defer t.release()

	// 2. Put the object.
	key := blobKey(a.name, ulid.Make())
	meta := blobMeta(a.name, mb, uid, in, flagList(bits, strings.Join(kws, " ")), internalDate)
	if err := s.opts.Blobs.Put(ctx, key, in.reader(), in.Size, meta); err != nil {
		return fail(err)
	}

	// 3. Index row, after every earlier reservation of this mailbox.
	res := AppendResult{MailboxID: mb.ID, UIDValidity: mb.UIDValidity}
	err = t.wait(ctx)
	if err == nil {
		err = s.writeTx(ctx, func(tx *sql.Tx) error {
			// The next Append of this mailbox may run as soon as this
			// row is in the transaction: it then commits in this
			// transaction or a later one, never before (commit.go).
			defer t.release()
			var err error
			res.UID, res.ModSeq, err = a.insertMessage(ctx, tx, mb.ID, uid, key, in, bits, kws, internalDate)
			return err
		})
	}
	t.release()
	if err != nil {
		s.deleteBlobs(ctx, []string{key})
		return fail(err)
	}
	if res.UID != uid {
		// Normal with several servers delivering to one mailbox (a UID
		// is wasted, which IMAP allows); the journal records the real
		// UID (the change is not SelfDescribed).
		s.log.Debug("mailstore: UID reservation overtaken by another writer; object metadata uid is stale",
			"account", a.name, "mailbox", name, "reserved", uid, "uid", res.UID, "key", key)
	}
	s.hub.publish(Change{Account: a.name, Kind: ChangeNewMail, MailboxGUID: mb.GUID, ModSeq: res.ModSeq,
		SelfDescribed: res.UID == uid})
	return res, nil
}

// insertMessage adds the index row of a stored object and returns its UID
// and MODSEQ. uid is the reserved UID; if a larger UID already exists in
// the mailbox (only another process can cause that, see seq.go) a fresh
// one is taken.
func (a *Account) insertMessage(ctx context.Context, tx *sql.Tx, mailboxID int64, uid uint32, key string,
	in *Incoming, bits int64, kws []string, date time.Time) (uint32, uint64, error) {
	p := a.s.pq(tx)
	mb, err := a.mailboxByID(ctx, tx, mailboxID)
	if err != nil {
		return 0, 0, err
	}
	var maxUID sql.NullInt64
	if err := p.QueryRowContext(ctx, `SELECT max(u) FROM (
		SELECT max(uid) AS u FROM messages WHERE mailbox_id = ?
		UNION ALL SELECT max(uid) FROM expunged WHERE mailbox_id = ?) AS t`, mailboxID, mailboxID).Scan(&maxUID); err != nil {
		return 0, 0, err
	}
	if maxUID.Valid && int64(uid) <= maxUID.Int64 {
		uid = mb.UIDNext
	}
	modseq := mb.HighestModSeq + 1
	if _, err := p.ExecContext(ctx, `UPDATE mailboxes SET highestmodseq = ?, uidnext = max(uidnext, ?) WHERE id = ?`,
		modseq, int64(uid)+1, mailboxID); err != nil {
		return 0, 0, err
	}
	ckw, err := canonKeywords(ctx, tx, a.id, kws, true)
	if err != nil {
		return 0, 0, err
	}
	if _, err := p.ExecContext(ctx, `INSERT INTO blobs (key, account_id, refs, size, sha256) VALUES (?, ?, 1, ?, ?)`,
		key, a.id, in.Size, in.SHA256[:]); err != nil {
		return 0, 0, err
	}
	_, tzOff := date.Zone()
	d := in.idx
	if _, err := p.ExecContext(ctx, `INSERT INTO messages (mailbox_id, uid, blob_key, flags, keywords, modseq,
		internal_date, internal_tz, save_date, size, sha256, envelope, bodystructure, body, structure, header,
		subject, from_addr, to_addr, cc_addr, bcc_addr, date, message_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		mailboxID, uid, key, bits, strings.Join(ckw, " "), modseq,
		date.Unix(), tzOff, time.Now().Unix(), in.Size, in.SHA256[:],
		a.s.anyBytes(d.envelope), a.s.anyBytes(d.bodyStructure), a.s.anyBytes(d.body), d.structure, d.header,
		a.s.anyBytes(d.subject), a.s.anyBytes(d.from), a.s.anyBytes(d.to), a.s.anyBytes(d.cc), a.s.anyBytes(d.bcc),
		d.date, a.s.anyBytes(d.messageID)); err != nil {
		return 0, 0, err
	}
	return uid, modseq, nil
}
