package mailstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

func (s *Store) account(ctx context.Context, name string) (*Account, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: empty name", ErrNoAccount)
	}
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT id FROM accounts WHERE name = ?`, name).Scan(&id)
	if err == nil {
		return &Account{s: s, id: id, name: name}, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("mailstore: account %s: %w", name, err)
	}
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT id FROM accounts WHERE name = ?`, name).Scan(&id)
		if err == nil {
			return nil // created meanwhile
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		now := time.Now().Unix()
		if err := tx.QueryRowContext(ctx, `INSERT INTO accounts (name, next_uidvalidity, created)
			VALUES (?, max(?, coalesce((SELECT value FROM counters WHERE name = 'uidvalidity-floor'), 0)), ?)
			RETURNING id`, name, now, now).Scan(&id); err != nil {
			return err
		}
		for _, d := range DefaultMailboxes {
			if _, err := createMailboxTx(ctx, tx, id, d.Name, d.SpecialUse); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO subscriptions (account_id, name) VALUES (?, ?)
				ON CONFLICT DO NOTHING`, id, d.Name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mailstore: account %s: %w", name, err)
	}
	s.hub.publish(Change{Account: name, Kind: ChangeMailboxes})
	return &Account{s: s, id: id, name: name}, nil
}

func (s *Store) deleteAccount(ctx context.Context, name string) error {
	var keys []string
	var mboxIDs []int64
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var id int64
		if err := tx.QueryRowContext(ctx, `SELECT id FROM accounts WHERE name = ?`, name).Scan(&id); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNoAccount
			}
			return err
		}
		var err error
		if keys, err = queryStrings(ctx, tx, `SELECT key FROM blobs WHERE account_id = ?`, id); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT id FROM mailboxes WHERE account_id = ?`, id)
		if err != nil {
			return err
		}
		for rows.Next() {
			var m int64
			if err := rows.Scan(&m); err != nil {
				rows.Close()
				return err
			}
			mboxIDs = append(mboxIDs, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO counters (name, value)
			SELECT 'uidvalidity-floor', next_uidvalidity FROM accounts WHERE id = ?
			ON CONFLICT (name) DO UPDATE SET value = max(counters.value, excluded.value)`, id); err != nil {
			return err
		}
		// Messages and expunge logs go with their mailboxes; then the
		// blob rows they pointed at; the rest cascades from accounts.
		if _, err := tx.ExecContext(ctx, `DELETE FROM mailboxes WHERE account_id = ?`, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM blobs WHERE account_id = ?`, id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM accounts WHERE id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("mailstore: delete account %s: %w", name, err)
	}
	for _, m := range mboxIDs {
		s.dropSeq(m)
	}
	s.deleteBlobs(ctx, keys)
	// Under the journal lock: a flush of another server either wrote its
	// object before (deleted here) or finds the account gone after.
	if unlock, err := s.lockJournal(ctx, name); err != nil {
		s.log.Warn("mailstore: delete account: journal lock failed; deleting the journal without it", "account", name, "err", err)
		s.deleteJournal(ctx, name)
	} else {
		s.deleteJournal(ctx, name)
		unlock()
	}
	s.hub.publish(Change{Account: name, Kind: ChangeAccountDeleted})
	return nil
}

func queryStrings(ctx context.Context, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// newGUID returns 32 random hex digits.
func newGUID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// nextUIDValidity takes the account's next UIDVALIDITY: the counter, or
// the current time if that is larger, so values never repeat for the
// account even across a deleted and recreated account.
func nextUIDValidity(ctx context.Context, tx *sql.Tx, accountID int64) (uint32, error) {
	var v int64
	err := tx.QueryRowContext(ctx, `UPDATE accounts SET next_uidvalidity = max(next_uidvalidity, ?) + 1
		WHERE id = ? RETURNING next_uidvalidity - 1`, time.Now().Unix(), accountID).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNoAccount
	}
	if err != nil {
		return 0, err
	}
	if v <= 0 || v > 0xffffffff {
		return 0, fmt.Errorf("mailstore: UIDVALIDITY counter out of range: %d", v)
	}
	return uint32(v), nil
}

// createMailboxTx creates one mailbox (name already normalised, known not
// to exist) with UIDNEXT 1 and HIGHESTMODSEQ 1.
func createMailboxTx(ctx context.Context, tx *sql.Tx, accountID int64, name, specialUse string) (Mailbox, error) {
	uv, err := nextUIDValidity(ctx, tx, accountID)
	if err != nil {
		return Mailbox{}, err
	}
	mb := Mailbox{GUID: newGUID(), Name: name, UIDValidity: uv, UIDNext: 1, HighestModSeq: 1, SpecialUse: specialUse}
	err = tx.QueryRowContext(ctx, `INSERT INTO mailboxes (account_id, guid, name, uidvalidity, uidnext, highestmodseq, special_use, created)
		VALUES (?, ?, ?, ?, 1, 1, ?, ?) RETURNING id`, accountID, mb.GUID, name, uv, specialUse, time.Now().Unix()).Scan(&mb.ID)
	return mb, err
}

// mailboxExists reports whether the account has a mailbox named name.
func mailboxExists(ctx context.Context, q querier, accountID int64, name string) (bool, error) {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?`, accountID, name).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// createParents creates the missing ancestors of name.
func createParents(ctx context.Context, tx *sql.Tx, accountID int64, name string) error {
	for _, p := range parents(name) {
		ok, err := mailboxExists(ctx, tx, accountID, p)
		if err != nil {
			return err
		}
		if !ok {
			if _, err := createMailboxTx(ctx, tx, accountID, p, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

const mailboxCols = `m.id, m.guid, m.name, m.uidvalidity, m.uidnext, m.highestmodseq, m.special_use,
	EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = m.account_id AND s.name = m.name),
	count(x.id), count(CASE WHEN (x.flags & 1) = 0 THEN 1 END), count(CASE WHEN (x.flags & 8) != 0 THEN 1 END),
	CAST(coalesce(sum(x.size), 0) AS BIGINT)`

func scanMailbox(sc interface{ Scan(...any) error }) (Mailbox, error) {
	var m Mailbox
	err := sc.Scan(&m.ID, &m.GUID, &m.Name, &m.UIDValidity, &m.UIDNext, &m.HighestModSeq, &m.SpecialUse,
		&m.Subscribed, &m.Messages, &m.Unseen, &m.Deleted, &m.Size)
	return m, err
}

func (a *Account) mailboxes(ctx context.Context) ([]Mailbox, error) {
	rows, err := a.s.db.QueryContext(ctx, `SELECT `+mailboxCols+`
		FROM mailboxes m LEFT JOIN messages x ON x.mailbox_id = m.id
		WHERE m.account_id = ? GROUP BY m.id ORDER BY m.name`, a.id)
	if err != nil {
		return nil, fmt.Errorf("mailstore: mailboxes %s: %w", a.name, err)
	}
	defer rows.Close()
	var out []Mailbox
	for rows.Next() {
		m, err := scanMailbox(rows)
		if err != nil {
			return nil, fmt.Errorf("mailstore: mailboxes %s: %w", a.name, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailstore: mailboxes %s: %w", a.name, err)
	}
	return out, nil
}

func (a *Account) mailbox(ctx context.Context, name string) (Mailbox, error) {
	n, err := normName(name)
	if err != nil {
		return Mailbox{}, fmt.Errorf("mailstore: mailbox %q: %w", name, err)
	}
	m, err := scanMailbox(a.s.db.QueryRowContext(ctx, `SELECT `+mailboxCols+`
		FROM mailboxes m LEFT JOIN messages x ON x.mailbox_id = m.id
		WHERE m.account_id = ? AND m.name = ? GROUP BY m.id`, a.id, n))
	if errors.Is(err, sql.ErrNoRows) {
		return Mailbox{}, fmt.Errorf("mailstore: mailbox %q: %w", n, ErrNoMailbox)
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("mailstore: mailbox %q: %w", n, err)
	}
	return m, nil
}

// mailboxByID returns a mailbox's counters (no counts) if it belongs to
// the account.
func (a *Account) mailboxByID(ctx context.Context, q querier, id int64) (Mailbox, error) {
	m := Mailbox{ID: id}
	err := a.s.pq(q).QueryRowContext(ctx, `SELECT guid, name, uidvalidity, uidnext, highestmodseq, special_use
		FROM mailboxes WHERE id = ? AND account_id = ?`, id, a.id).
		Scan(&m.GUID, &m.Name, &m.UIDValidity, &m.UIDNext, &m.HighestModSeq, &m.SpecialUse)
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("%w: id %d", ErrNoMailbox, id)
	}
	return m, err
}

// mailboxByName is mailboxByID by (normalised) name.
func (a *Account) mailboxByName(ctx context.Context, q querier, name string) (Mailbox, error) {
	m := Mailbox{Name: name}
	err := a.s.pq(q).QueryRowContext(ctx, `SELECT id, guid, uidvalidity, uidnext, highestmodseq, special_use
		FROM mailboxes WHERE account_id = ? AND name = ?`, a.id, name).
		Scan(&m.ID, &m.GUID, &m.UIDValidity, &m.UIDNext, &m.HighestModSeq, &m.SpecialUse)
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("%w: %q", ErrNoMailbox, name)
	}
	return m, err
}

func validSpecialUse(u string) bool {
	switch u {
	case "", UseDrafts, UseSent, UseTrash, UseJunk, UseArchive, UseAll, UseFlagged:
		return true
	}
	return false
}

func (a *Account) createMailbox(ctx context.Context, name, specialUse string) (Mailbox, error) {
	n, err := normName(name)
	if err != nil {
		return Mailbox{}, fmt.Errorf("mailstore: create %q: %w", name, err)
	}
	if !validSpecialUse(specialUse) {
		return Mailbox{}, fmt.Errorf("mailstore: create %q: %w: special-use %q", n, ErrBadName, specialUse)
	}
	var mb Mailbox
	err = a.s.writeTx(ctx, func(tx *sql.Tx) error {
		ok, err := mailboxExists(ctx, tx, a.id, n)
		if err != nil {
			return err
		}
		if ok {
			return ErrMailboxExists
		}
		if err := createParents(ctx, tx, a.id, n); err != nil {
			return err
		}
		mb, err = createMailboxTx(ctx, tx, a.id, n, specialUse)
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM subscriptions WHERE account_id = ? AND name = ?)`,
			a.id, n).Scan(&mb.Subscribed)
	})
	if err != nil {
		return Mailbox{}, fmt.Errorf("mailstore: create %q: %w", n, err)
	}
	a.s.hub.publish(Change{Account: a.name, Kind: ChangeMailboxes})
	a.s.journalNow(ctx, a.name)
	return mb, nil
}

func (a *Account) deleteMailbox(ctx context.Context, name string) error {
	n, err := normName(name)
	if err != nil {
		return fmt.Errorf("mailstore: delete %q: %w", name, err)
	}
	if n == "INBOX" {
		return fmt.Errorf("mailstore: delete %q: %w", n, ErrInboxDelete)
	}
	var keys []string
	var id int64
	err = a.s.writeTx(ctx, func(tx *sql.Tx) error {
		mb, err := a.mailboxByName(ctx, tx, n)
		if err != nil {
			return err
		}
		id = mb.ID
		if keys, err = unrefMailbox(ctx, tx, mb.ID); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM mailboxes WHERE id = ?`, mb.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("mailstore: delete %q: %w", n, err)
	}
	a.s.dropSeq(id)
	a.s.deleteBlobs(ctx, keys)
	a.s.hub.publish(Change{Account: a.name, Kind: ChangeMailboxes})
	a.s.journalNow(ctx, a.name)
	return nil
}

// unrefMailbox drops the blob references of every message in a mailbox
// and returns the keys of objects no longer referenced (their blob rows
// are deleted).
func unrefMailbox(ctx context.Context, tx *sql.Tx, mailboxID int64) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT blob_key, count(*) FROM messages WHERE mailbox_id = ? GROUP BY blob_key`, mailboxID)
	if err != nil {
		return nil, err
	}
	type ref struct {
		key string
		n   int64
	}
	var refs []ref
	for rows.Next() {
		var r ref
		if err := rows.Scan(&r.key, &r.n); err != nil {
			rows.Close()
			return nil, err
		}
		refs = append(refs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var gone []string
	for _, r := range refs {
		g, err := unrefBlob(ctx, tx, r.key, r.n)
		if err != nil {
			return nil, err
		}
		if g {
			gone = append(gone, r.key)
		}
	}
	return gone, nil
}

// unrefBlob drops n references to a blob; at zero its row is deleted and
// gone is true (the caller deletes the object after commit).
func unrefBlob(ctx context.Context, tx *sql.Tx, key string, n int64) (gone bool, err error) {
	var refs int64
	if err := tx.QueryRowContext(ctx, `UPDATE blobs SET refs = refs - ? WHERE key = ? RETURNING refs`, n, key).Scan(&refs); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return false, nil // already gone (should not happen; fsck)
		}
		return false, err
	}
	if refs > 0 {
		return false, nil
	}
	_, err = tx.ExecContext(ctx, `DELETE FROM blobs WHERE key = ?`, key)
	return err == nil, err
}

// renameMailbox implements RenameMailbox.
func (a *Account) renameMailbox(ctx context.Context, oldName, newName string) error {
	on, err := normName(oldName)
	if err != nil {
		return fmt.Errorf("mailstore: rename %q: %w", oldName, err)
	}
	nn, err := normName(newName)
	if err != nil {
		return fmt.Errorf("mailstore: rename %q to %q: %w", on, newName, err)
	}
	if on == nn {
		return fmt.Errorf("mailstore: rename %q to %q: %w", on, nn, ErrMailboxExists)
	}
	if on != "INBOX" && len(nn) > len(on) && nn[:len(on)+1] == on+"/" {
		return fmt.Errorf("mailstore: rename %q to %q: %w: into its own child", on, nn, ErrBadName)
	}
	err = a.s.writeTx(ctx, func(tx *sql.Tx) error {
		src, err := a.mailboxByName(ctx, tx, on)
		if err != nil {
			return err
		}
		if on == "INBOX" {
			return a.renameInbox(ctx, tx, src, nn)
		}
		// The mailbox and its children, renamed as a group. Two passes
		// (to unique temporary names, then to the final ones) so that a
		// target that is also a source (rename "a/b" to "a" with a child
		// "a/b/b") never collides.
		type mv struct {
			id       int64
			from, to string
		}
		var moves []mv
		rows, err := tx.QueryContext(ctx, `SELECT id, name FROM mailboxes WHERE account_id = ?
			AND (name = ? OR (name >= ? AND name < ?))`, a.id, on, on+"/", on+"0")
		if err != nil {
			return err
		}
		for rows.Next() {
			var m mv
			if err := rows.Scan(&m.id, &m.from); err != nil {
				rows.Close()
				return err
			}
			m.to = nn + m.from[len(on):]
			moves = append(moves, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		sources := map[string]bool{}
		for _, m := range moves {
			sources[m.from] = true
		}
		for _, m := range moves {
			if len(m.to) > MaxNameBytes {
				return fmt.Errorf("%w: %q too long", ErrBadName, m.to)
			}
			if sources[m.to] {
				continue
			}
			ok, err := mailboxExists(ctx, tx, a.id, m.to)
			if err != nil {
				return err
			}
			if ok {
				return fmt.Errorf("%w: %q", ErrMailboxExists, m.to)
			}
		}
		for _, m := range moves {
			if _, err := tx.ExecContext(ctx, `UPDATE mailboxes SET name = ? WHERE id = ?`,
				fmt.Sprintf("\x01rename\x01%d", m.id), m.id); err != nil {
				return err
			}
		}
		for _, m := range moves {
			if _, err := tx.ExecContext(ctx, `UPDATE mailboxes SET name = ? WHERE id = ?`, m.to, m.id); err != nil {
				return err
			}
			// Subscriptions follow the mailbox.
			res, err := tx.ExecContext(ctx, `DELETE FROM subscriptions WHERE account_id = ? AND name = ?`, a.id, m.from)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n > 0 {
				if _, err := tx.ExecContext(ctx, `INSERT INTO subscriptions (account_id, name) VALUES (?, ?)
					ON CONFLICT DO NOTHING`, a.id, m.to); err != nil {
					return err
				}
			}
		}
		return createParents(ctx, tx, a.id, nn)
	})
	if err != nil {
		return fmt.Errorf("mailstore: rename %q to %q: %w", on, nn, err)
	}
	a.s.hub.publish(Change{Account: a.name, Kind: ChangeMailboxes})
	a.s.journalNow(ctx, a.name)
	return nil
}

// renameInbox implements the INBOX rule of RFC 3501 §6.3.5: all messages
// move to a new mailbox newName (new UIDVALIDITY, UIDs from 1, flags
// kept) and are expunged from INBOX, which stays (empty). INBOX's
// children are not renamed.
func (a *Account) renameInbox(ctx context.Context, tx *sql.Tx, inbox Mailbox, newName string) error {
	ok, err := mailboxExists(ctx, tx, a.id, newName)
	if err != nil {
		return err
	}
	if ok {
		return fmt.Errorf("%w: %q", ErrMailboxExists, newName)
	}
	if err := createParents(ctx, tx, a.id, newName); err != nil {
		return err
	}
	dst, err := createMailboxTx(ctx, tx, a.id, newName, "")
	if err != nil {
		return err
	}
	_, err = moveAll(ctx, tx, inbox, dst)
	return err
}

// moveAll moves every message of src to dst (empty, not in use by any
// sequencer) keeping flags, with new UIDs from dst's UIDNEXT, and logs
// them expunged in src. Returns the number moved.
func moveAll(ctx context.Context, tx *sql.Tx, src, dst Mailbox) (int, error) {
	rows, err := tx.QueryContext(ctx, `SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid`, src.ID)
	if err != nil {
		return 0, err
	}
	var uids []uint32
	for rows.Next() {
		var u uint32
		if err := rows.Scan(&u); err != nil {
			rows.Close()
			return 0, err
		}
		uids = append(uids, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(uids) == 0 {
		return 0, nil
	}
	srcMod := src.HighestModSeq + 1
	dstMod := dst.HighestModSeq + 1
	next := dst.UIDNext
	now := time.Now().Unix()
	for _, u := range uids {
		if _, err := tx.ExecContext(ctx, `UPDATE messages SET mailbox_id = ?, uid = ?, modseq = ?, save_date = ?
			WHERE mailbox_id = ? AND uid = ?`, dst.ID, next, dstMod, now, src.ID, u); err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)`,
			src.ID, u, srcMod); err != nil {
			return 0, err
		}
		next++
	}
	if _, err := tx.ExecContext(ctx, `UPDATE mailboxes SET highestmodseq = ? WHERE id = ?`, srcMod, src.ID); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE mailboxes SET highestmodseq = ?, uidnext = ? WHERE id = ?`, dstMod, next, dst.ID); err != nil {
		return 0, err
	}
	return len(uids), nil
}

func (a *Account) setSubscribed(ctx context.Context, name string, on bool) error {
	n, err := normName(name)
	if err != nil {
		return fmt.Errorf("mailstore: subscribe %q: %w", name, err)
	}
	err = a.s.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		if on {
			_, err = tx.ExecContext(ctx, `INSERT INTO subscriptions (account_id, name) VALUES (?, ?) ON CONFLICT DO NOTHING`, a.id, n)
		} else {
			_, err = tx.ExecContext(ctx, `DELETE FROM subscriptions WHERE account_id = ? AND name = ?`, a.id, n)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("mailstore: subscribe %q: %w", n, err)
	}
	a.s.markDirty(a.name)
	a.s.journalNow(ctx, a.name)
	return nil
}

func (a *Account) subscriptions(ctx context.Context) ([]string, error) {
	out, err := queryStrings(ctx, a.s.db, `SELECT name FROM subscriptions WHERE account_id = ? ORDER BY name`, a.id)
	if err != nil {
		return nil, fmt.Errorf("mailstore: subscriptions %s: %w", a.name, err)
	}
	return out, nil
}

func (a *Account) keywords(ctx context.Context) ([]string, error) {
	out, err := queryStrings(ctx, a.s.db, `SELECT name FROM keywords WHERE account_id = ? ORDER BY name`, a.id)
	if err != nil {
		return nil, fmt.Errorf("mailstore: keywords %s: %w", a.name, err)
	}
	return out, nil
}
