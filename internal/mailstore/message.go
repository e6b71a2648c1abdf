package mailstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/mime"
)

// uidChunk is how many UIDs one query covers.
const uidChunk = 500

// sortedUIDs returns uids sorted ascending without duplicates or zeros.
func sortedUIDs(uids []uint32) []uint32 {
	out := slices.Clone(uids)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > 0 && out[0] == 0 {
		out = out[1:]
	}
	return out
}

// uidChunks calls fn for each chunk of (sorted) uids with an SQL
// condition on column uid and its arguments. The condition may match
// UIDs not in the chunk (a BETWEEN over a dense run); want filters them.
func uidChunks(uids []uint32, fn func(cond string, args []any, want func(uint32) bool) error) error {
	for len(uids) > 0 {
		n := min(len(uids), uidChunk)
		c := uids[:n]
		uids = uids[n:]
		lo, hi := c[0], c[len(c)-1]
		want := func(u uint32) bool { _, ok := slices.BinarySearch(c, u); return ok }
		if int64(hi)-int64(lo) < int64(4*len(c)+64) {
			if err := fn("uid BETWEEN ? AND ?", []any{lo, hi}, want); err != nil {
				return err
			}
			continue
		}
		args := make([]any, len(c))
		for i, u := range c {
			args[i] = u
		}
		if err := fn("uid IN (?"+strings.Repeat(",?", len(c)-1)+")", args, want); err != nil {
			return err
		}
	}
	return nil
}

func (a *Account) states(ctx context.Context, mailboxID int64) ([]MessageState, error) {
	var out []MessageState
	err := a.s.readTx(ctx, func(tx *sql.Tx) error {
		if _, err := a.mailboxByID(ctx, tx, mailboxID); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT uid, modseq, flags, keywords FROM messages WHERE mailbox_id = ? ORDER BY uid`, mailboxID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			st, err := scanState(rows)
			if err != nil {
				return err
			}
			out = append(out, st)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("mailstore: states %d: %w", mailboxID, err)
	}
	return out, nil
}

func scanState(sc interface{ Scan(...any) error }) (MessageState, error) {
	var st MessageState
	var bits int64
	var kw string
	if err := sc.Scan(&st.UID, &st.ModSeq, &bits, &kw); err != nil {
		return st, err
	}
	st.Flags = flagList(bits, kw)
	return st, nil
}

// messagesBatch is how many messages Messages loads before calling fn, so
// that no database snapshot stays open while fn writes to a client.
const messagesBatch = 32

func (a *Account) messages(ctx context.Context, mailboxID int64, uids []uint32, fn func(*Message) error) error {
	uids = sortedUIDs(uids)
	if _, err := a.mailboxByID(ctx, a.s.db, mailboxID); err != nil {
		return fmt.Errorf("mailstore: messages %d: %w", mailboxID, err)
	}
	for len(uids) > 0 {
		n := min(len(uids), messagesBatch)
		batch := uids[:n]
		uids = uids[n:]
		var msgs []*Message
		err := uidChunks(batch, func(cond string, args []any, want func(uint32) bool) error {
			rows, err := a.s.pq(a.s.db).QueryContext(ctx, `SELECT uid, modseq, flags, keywords, internal_date, internal_tz,
				save_date, size, blob_key, envelope, bodystructure, body, structure, header
				FROM messages WHERE mailbox_id = ? AND `+cond+` ORDER BY uid`, append([]any{mailboxID}, args...)...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				m := &Message{}
				var bits int64
				var kw string
				var idate, tz, sdate int64
				var structure []byte
				if err := rows.Scan(&m.UID, &m.ModSeq, &bits, &kw, &idate, &tz, &sdate, &m.Size, &m.BlobKey,
					&m.Envelope, &m.BodyStructure, &m.Body, &structure, &m.Header); err != nil {
					return err
				}
				if !want(m.UID) {
					continue
				}
				m.Flags = flagList(bits, kw)
				m.InternalDate = time.Unix(idate, 0).In(zone(tz))
				m.SavedAt = time.Unix(sdate, 0).UTC()
				if m.Structure, err = mime.DecodeStructure(structure); err != nil {
					return fmt.Errorf("uid %d: structure: %w", m.UID, err)
				}
				msgs = append(msgs, m)
			}
			return rows.Err()
		})
		if err != nil {
			return fmt.Errorf("mailstore: messages %d: %w", mailboxID, err)
		}
		for _, m := range msgs {
			if err := fn(m); err != nil {
				return err
			}
		}
	}
	return nil
}

// zone returns a fixed zone for an offset in seconds east of UTC.
func zone(off int64) *time.Location {
	if off == 0 {
		return time.UTC
	}
	return time.FixedZone("", int(off))
}

func (a *Account) openBody(ctx context.Context, m *Message, offset, length int64) (io.ReadCloser, error) {
	rc, err := a.s.opts.Blobs.NewRangeReader(ctx, m.BlobKey, offset, length)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, fmt.Errorf("mailstore: body uid %d: %w: %w", m.UID, ErrMissingObject, err)
	}
	if err != nil {
		return nil, fmt.Errorf("mailstore: body uid %d: %w", m.UID, err)
	}
	return rc, nil
}

func (a *Account) storeFlags(ctx context.Context, mailboxID int64, uids []uint32, op StoreOp, flags []string, unchangedSince uint64) (changed []MessageState, failed []uint32, err error) {
	uids = sortedUIDs(uids)
	bits, kws, err := parseFlags(flags)
	if err != nil {
		return nil, nil, fmt.Errorf("mailstore: store flags: %w", err)
	}
	if op != Replace && op != Add && op != Remove {
		return nil, nil, fmt.Errorf("mailstore: store flags: bad op %d", op)
	}
	var guid string
	err = a.s.writeTx(ctx, func(tx *sql.Tx) error {
		changed, failed = nil, nil
		p := a.s.pq(tx)
		mb, err := a.mailboxByID(ctx, tx, mailboxID)
		if err != nil {
			return err
		}
		guid = mb.GUID
		ckw, err := canonKeywords(ctx, tx, a.id, kws, op != Remove)
		if err != nil {
			return err
		}
		type upd struct {
			uid  uint32
			bits int64
			kw   string
		}
		var upds []upd
		err = uidChunks(uids, func(cond string, args []any, want func(uint32) bool) error {
			rows, err := p.QueryContext(ctx, `SELECT uid, modseq, flags, keywords FROM messages
				WHERE mailbox_id = ? AND `+cond+` ORDER BY uid`, append([]any{mailboxID}, args...)...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var uid uint32
				var modseq uint64
				var b int64
				var kw string
				if err := rows.Scan(&uid, &modseq, &b, &kw); err != nil {
					return err
				}
				if !want(uid) {
					continue
				}
				// RFC 7162 §3.1.3: a message changed after
				// UNCHANGEDSINCE is not touched and is reported.
				if unchangedSince > 0 && modseq > unchangedSince {
					failed = append(failed, uid)
					continue
				}
				nb, nkw := applyFlags(op, b, kw, bits, ckw)
				if nb != b || nkw != kw {
					upds = append(upds, upd{uid, nb, nkw})
				}
			}
			return rows.Err()
		})
		if err != nil {
			return err
		}
		if len(upds) == 0 {
			return nil
		}
		modseq := mb.HighestModSeq + 1
		for _, u := range upds {
			if _, err := p.ExecContext(ctx, `UPDATE messages SET flags = ?, keywords = ?, modseq = ?
				WHERE mailbox_id = ? AND uid = ?`, u.bits, u.kw, modseq, mailboxID, u.uid); err != nil {
				return err
			}
			changed = append(changed, MessageState{UID: u.uid, ModSeq: modseq, Flags: flagList(u.bits, u.kw)})
		}
		_, err = p.ExecContext(ctx, `UPDATE mailboxes SET highestmodseq = ? WHERE id = ?`, modseq, mailboxID)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("mailstore: store flags %d: %w", mailboxID, err)
	}
	if len(changed) > 0 {
		a.s.hub.publish(Change{Account: a.name, Kind: ChangeFlags, MailboxGUID: guid, ModSeq: changed[0].ModSeq})
	}
	return changed, failed, nil
}

func (a *Account) expunge(ctx context.Context, mailboxID int64, uids []uint32) ([]uint32, error) {
	var removed []uint32
	var gone []string
	var guid string
	var modseq uint64
	err := a.s.writeTx(ctx, func(tx *sql.Tx) error {
		removed, gone = nil, nil
		mb, err := a.mailboxByID(ctx, tx, mailboxID)
		if err != nil {
			return err
		}
		guid = mb.GUID
		type victim struct {
			uid uint32
			key string
		}
		var vs []victim
		collect := func(cond string, args []any, want func(uint32) bool) error {
			rows, err := tx.QueryContext(ctx, `SELECT uid, blob_key FROM messages
				WHERE mailbox_id = ? AND (flags & 8) != 0 AND `+cond+` ORDER BY uid`, append([]any{mailboxID}, args...)...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var v victim
				if err := rows.Scan(&v.uid, &v.key); err != nil {
					return err
				}
				if want(v.uid) {
					vs = append(vs, v)
				}
			}
			return rows.Err()
		}
		if uids == nil {
			err = collect("1 = 1", nil, func(uint32) bool { return true })
		} else {
			err = uidChunks(sortedUIDs(uids), collect)
		}
		if err != nil {
			return err
		}
		if len(vs) == 0 {
			return nil
		}
		modseq = mb.HighestModSeq + 1
		for _, v := range vs {
			if _, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE mailbox_id = ? AND uid = ?`, mailboxID, v.uid); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)`,
				mailboxID, v.uid, modseq); err != nil {
				return err
			}
			g, err := unrefBlob(ctx, tx, v.key, 1)
			if err != nil {
				return err
			}
			if g {
				gone = append(gone, v.key)
			}
			removed = append(removed, v.uid)
		}
		_, err = tx.ExecContext(ctx, `UPDATE mailboxes SET highestmodseq = ? WHERE id = ?`, modseq, mailboxID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mailstore: expunge %d: %w", mailboxID, err)
	}
	a.s.deleteLater(gone)
	if len(removed) > 0 {
		a.s.hub.publish(Change{Account: a.name, Kind: ChangeExpunge, MailboxGUID: guid, ModSeq: modseq, Gone: gone})
		a.s.journalSoon(a.name)
	}
	return removed, nil
}

// copyMsgs implements Copy and Move.
func (a *Account) copyMsgs(ctx context.Context, mailboxID int64, uids []uint32, dest string, move bool) (CopyResult, error) {
	op := "copy"
	if move {
		op = "move"
	}
	dn, err := normName(dest)
	if err != nil {
		return CopyResult{}, fmt.Errorf("mailstore: %s to %q: %w", op, dest, err)
	}
	fail := func(err error) (CopyResult, error) {
		return CopyResult{}, fmt.Errorf("mailstore: %s %d to %q: %w", op, mailboxID, dn, err)
	}
	dst, err := a.mailboxByName(ctx, a.s.db, dn)
	if err != nil {
		return fail(err)
	}
	if move && dst.ID == mailboxID {
		return fail(ErrSameMailbox)
	}
	uids = sortedUIDs(uids)
	// Hold the destination's sequencer: no Append may reserve a UID
	// while this transaction assigns UIDs, and earlier ones must be done.
	q := a.s.seqFor(dst.ID)
	if err := q.lock(ctx); err != nil {
		return fail(err)
	}
	locked := true
	unlock := func() {
		if locked {
			locked = false
			q.unlock()
		}
	}
	defer unlock()
	if err := q.drain(ctx); err != nil {
		return fail(err)
	}
	var res CopyResult
	var srcGUID string
	var srcMod, dstMod uint64
	err = a.s.writeTx(ctx, func(tx *sql.Tx) error {
		res = CopyResult{}
		src, err := a.mailboxByID(ctx, tx, mailboxID)
		if err != nil {
			return err
		}
		dst, err := a.mailboxByID(ctx, tx, dst.ID)
		if err != nil {
			return err
		}
		res.UIDValidity = dst.UIDValidity
		err = uidChunks(uids, func(cond string, args []any, want func(uint32) bool) error {
			rows, err := tx.QueryContext(ctx, `SELECT uid FROM messages WHERE mailbox_id = ? AND `+cond+` ORDER BY uid`,
				append([]any{mailboxID}, args...)...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var u uint32
				if err := rows.Scan(&u); err != nil {
					return err
				}
				if want(u) {
					res.SrcUIDs = append(res.SrcUIDs, u)
				}
			}
			return rows.Err()
		})
		if err != nil || len(res.SrcUIDs) == 0 {
			return err
		}
		srcGUID = src.GUID
		dstMod = dst.HighestModSeq + 1
		srcMod = src.HighestModSeq + 1
		if src.ID == dst.ID {
			srcMod = dstMod
		}
		next := dst.UIDNext
		now := time.Now().Unix()
		for _, u := range res.SrcUIDs {
			if move {
				_, err = tx.ExecContext(ctx, `UPDATE messages SET mailbox_id = ?, uid = ?, modseq = ?, save_date = ?
					WHERE mailbox_id = ? AND uid = ?`, dst.ID, next, dstMod, now, mailboxID, u)
				if err == nil {
					_, err = tx.ExecContext(ctx, `INSERT INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)`,
						mailboxID, u, srcMod)
				}
			} else {
				_, err = tx.ExecContext(ctx, `INSERT INTO messages (mailbox_id, uid, blob_key, flags, keywords, modseq,
					internal_date, internal_tz, save_date, size, sha256, envelope, bodystructure, body, structure, header,
					subject, from_addr, to_addr, cc_addr, bcc_addr, date, message_id)
					SELECT ?, ?, blob_key, flags, keywords, ?,
					internal_date, internal_tz, ?, size, sha256, envelope, bodystructure, body, structure, header,
					subject, from_addr, to_addr, cc_addr, bcc_addr, date, message_id
					FROM messages WHERE mailbox_id = ? AND uid = ?`, dst.ID, next, dstMod, now, mailboxID, u)
				if err == nil {
					_, err = tx.ExecContext(ctx, `UPDATE blobs SET refs = refs + 1
						WHERE key = (SELECT blob_key FROM messages WHERE mailbox_id = ? AND uid = ?)`, mailboxID, u)
				}
			}
			if err != nil {
				return err
			}
			res.DstUIDs = append(res.DstUIDs, next)
			next++
		}
		if _, err := tx.ExecContext(ctx, `UPDATE mailboxes SET highestmodseq = ?, uidnext = ? WHERE id = ?`,
			dstMod, next, dst.ID); err != nil {
			return err
		}
		if move {
			_, err = tx.ExecContext(ctx, `UPDATE mailboxes SET highestmodseq = ? WHERE id = ?`, srcMod, src.ID)
		}
		return err
	})
	unlock() // deliveries to dest need not wait for the journal write
	if err != nil {
		return fail(err)
	}
	if len(res.SrcUIDs) > 0 {
		// A MOVE is an expunge in the source and new mail in the
		// destination: one change each.
		if move {
			a.s.hub.publish(Change{Account: a.name, Kind: ChangeExpunge, MailboxGUID: srcGUID, ModSeq: srcMod})
		}
		a.s.hub.publish(Change{Account: a.name, Kind: ChangeNewMail, MailboxGUID: dst.GUID, ModSeq: dstMod})
		a.s.journalSoon(a.name)
	}
	return res, nil
}

func (a *Account) changes(ctx context.Context, mailboxID int64, uidValidity uint32, since uint64) (Changes, error) {
	var c Changes
	err := a.s.readTx(ctx, func(tx *sql.Tx) error {
		mb, err := a.mailboxByID(ctx, tx, mailboxID)
		if errors.Is(err, ErrNoMailbox) {
			return fmt.Errorf("%w: mailbox %d is gone", ErrUIDValidity, mailboxID)
		}
		if err != nil {
			return err
		}
		if mb.UIDValidity != uidValidity {
			return fmt.Errorf("%w: %d, was %d", ErrUIDValidity, mb.UIDValidity, uidValidity)
		}
		p := a.s.pq(tx)
		c.HighestModSeq = mb.HighestModSeq
		c.UIDNext = mb.UIDNext
		rows, err := p.QueryContext(ctx, `SELECT uid, modseq, flags, keywords FROM messages
			WHERE mailbox_id = ? AND modseq > ? ORDER BY uid`, mailboxID, since)
		if err != nil {
			return err
		}
		for rows.Next() {
			st, err := scanState(rows)
			if err != nil {
				rows.Close()
				return err
			}
			c.Updated = append(c.Updated, st)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = p.QueryContext(ctx, `SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid`, mailboxID, since)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var u uint32
			if err := rows.Scan(&u); err != nil {
				return err
			}
			c.Expunged = append(c.Expunged, u)
		}
		return rows.Err()
	})
	if err != nil {
		return Changes{}, fmt.Errorf("mailstore: changes %d: %w", mailboxID, err)
	}
	return c, nil
}
