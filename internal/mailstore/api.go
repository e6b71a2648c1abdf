// Package mailstore owns all mail state of all accounts: mailboxes, UIDs,
// UIDVALIDITY, flags, keywords, MODSEQ and the expunge log, kept in the
// metadata database (SQLite now), with message bodies in a blob.Store.
//
// Invariants (RFC 3501 §2.3.1.1, RFC 7162 §3):
//   - A UID, once assigned in a mailbox under a UIDVALIDITY, always names
//     the same message; UIDs in a mailbox are strictly increasing in
//     arrival order; UIDNEXT never goes down.
//   - Every change to a mailbox (new message, flag change, expunge) takes
//     a new MODSEQ from the mailbox's counter, strictly increasing;
//     HIGHESTMODSEQ is the largest MODSEQ given out. The messages changed
//     by one operation (one STORE, EXPUNGE, COPY or MOVE) share its MODSEQ.
//   - Expunged UIDs are kept with the MODSEQ of their expunge, so that a
//     client can ask what changed since a MODSEQ (QRESYNC VANISHED).
//
// Commit order (DESIGN §2): blob Put (durable) → index transaction →
// notify watchers. A crash can leave an orphan blob, never an index row
// without its blob.
//
// UIDs are reserved before the Put so that each object carries its UID
// in its metadata; a per-mailbox sequencer makes rows commit in UID order
// (seq.go). Objects are keyed <hash>/<account>/msg/<ulid> (names.go) and
// reference-counted in the index: COPY shares an object, and the object
// is deleted after the commit that drops its last reference. Orphans
// finds objects no row refers to (for fsck).
//
// The bucket is self-describing (DESIGN §3; package journal): each
// object's metadata says where it was delivered (blobMeta), and with
// Options.JournalInterval (or StartJournal) every later change is written
// to a per-account journal in the blob store, compacted into snapshots
// (journal.go). Reindex rebuilds an account's rows from those alone
// (reindex.go). A crash loses at most the last interval of flag changes.
//
// Mailbox names are UTF-8 with "/" as the hierarchy separator; "INBOX" is
// case-insensitive and stored as "INBOX".
//
// Schema: internal/metadb (MailMigrations), applied by Open.
//
// The Store is safe for concurrent use by many sessions.
package mailstore

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/bucketmail/bucketmail/internal/mime"
)

// Errors. Wrapped with a "mailstore: op name:" prefix; test with errors.Is.
var (
	ErrNoMailbox     = errors.New("mailstore: no such mailbox")        // IMAP NO [NONEXISTENT]
	ErrMailboxExists = errors.New("mailstore: mailbox already exists") // IMAP NO [ALREADYEXISTS]
	ErrHasChildren   = errors.New("mailstore: mailbox has children")   // RFC 3501 §6.3.4: DELETE of a \Noselect parent
	ErrInboxDelete   = errors.New("mailstore: INBOX cannot be deleted")
	ErrBadName       = errors.New("mailstore: invalid mailbox name") // empty segment, control chars, too long
	ErrNoAccount     = errors.New("mailstore: no such account")
	ErrUIDValidity   = errors.New("mailstore: UIDVALIDITY changed") // the selected mailbox was deleted/recreated
	ErrTooLarge      = errors.New("mailstore: message too large")
	ErrOverQuota     = errors.New("mailstore: over quota") // IMAP NO [OVERQUOTA], LMTP 552
	ErrMissingObject = errors.New("mailstore: message object missing from the blob store")
	ErrBadFlag       = errors.New("mailstore: invalid flag")                        // unknown \flag or keyword not an atom; IMAP BAD
	ErrSameMailbox   = errors.New("mailstore: source and destination are the same") // MOVE to the selected mailbox; IMAP NO
	// Temporary failures of the blob store wrap blob.ErrUnavailable.
)

// System flags (RFC 3501 §2.3.2), in canonical case. Keywords are stored
// as the client first wrote them; flag comparison is case-insensitive.
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
	FlagRecent   = `\Recent` // never stored; sessions compute it
)

// Special-use attributes (RFC 6154) of the default mailboxes.
const (
	UseDrafts  = `\Drafts`
	UseSent    = `\Sent`
	UseTrash   = `\Trash`
	UseJunk    = `\Junk`
	UseArchive = `\Archive`
	UseAll     = `\All`     // accepted by CreateMailbox (RFC 6154 §2), not created by default
	UseFlagged = `\Flagged` // accepted by CreateMailbox (RFC 6154 §2), not created by default
)

// DefaultMailboxes are created with every new account.
var DefaultMailboxes = []struct{ Name, SpecialUse string }{
	{"INBOX", ""}, {"Drafts", UseDrafts}, {"Sent", UseSent},
	{"Trash", UseTrash}, {"Junk", UseJunk}, {"Archive", UseArchive},
}

// Mailbox is a mailbox's state at the time it was read.
type Mailbox struct {
	ID            int64
	GUID          string // 32 hex chars, random, never reused (OBJECTID MAILBOXID)
	Name          string
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	SpecialUse    string // "" or one of the Use* constants
	Subscribed    bool

	// Counts, filled by Mailbox and Mailboxes (not by CreateMailbox: zero).
	Messages uint32
	Unseen   uint32 // messages without \Seen
	Deleted  uint32 // messages with \Deleted
	Size     int64  // sum of RFC822.SIZE
}

// MessageState is the mutable state of one message.
type MessageState struct {
	UID    uint32
	ModSeq uint64
	Flags  []string // system flags and keywords, sorted, no \Recent
}

// Message is what the index knows of a message, enough to answer FETCH
// without the blob except for body sections.
type Message struct {
	MessageState
	InternalDate  time.Time
	Size          int64      // RFC822.SIZE: octets of the stored message
	BlobKey       string     // blob.Store key
	Envelope      string     // IMAP ENVELOPE, encoded
	BodyStructure string     // IMAP BODYSTRUCTURE (extended), encoded
	Body          string     // IMAP BODY (non-extended), encoded
	Structure     *mime.Part // decoded part tree (offsets), no headers
	Header        []byte     // top-level header bytes
	SavedAt       time.Time  // SAVEDATE (RFC 8514)
}

// Account opens the mail state of an account, creating it with
// DefaultMailboxes on first use. account is the canonical account name
// from the userdb (lower-case address).
func (s *Store) Account(ctx context.Context, account string) (*Account, error) {
	return s.account(ctx, account)
}

// DeleteAccount removes an account's mailboxes, messages and blobs.
// ErrNoAccount if there is none. The index rows go in one transaction;
// the objects are deleted after it commits (a failed delete leaves an
// orphan for fsck).
func (s *Store) DeleteAccount(ctx context.Context, account string) error {
	return s.deleteAccount(ctx, account)
}

// Account is one account's handle. Cheap; many sessions may hold one.
type Account struct {
	s    *Store
	id   int64
	name string
}

// Name returns the account name.
func (a *Account) Name() string { return a.name }

// Mailboxes returns every mailbox of the account, sorted by name, with counts.
func (a *Account) Mailboxes(ctx context.Context) ([]Mailbox, error) { return a.mailboxes(ctx) }

// Mailbox returns one mailbox by name, with counts. ErrNoMailbox if none.
func (a *Account) Mailbox(ctx context.Context, name string) (Mailbox, error) {
	return a.mailbox(ctx, name)
}

// CreateMailbox creates a mailbox (and, as RFC 3501 §6.3.3 allows, any
// missing parents). A trailing "/" is ignored. ErrMailboxExists if it exists.
// The new mailbox gets a UIDVALIDITY never used before in the account,
// UIDNEXT 1 and HIGHESTMODSEQ 1. ErrBadName for a bad name or an unknown
// special-use attribute.
func (a *Account) CreateMailbox(ctx context.Context, name, specialUse string) (Mailbox, error) {
	return a.createMailbox(ctx, name, specialUse)
}

// DeleteMailbox deletes a mailbox and expunges its messages. Children are
// kept (they become children of a non-existent, \NonExistent parent).
// ErrInboxDelete for INBOX. The expunge log goes with the mailbox (a new
// mailbox of the same name gets a new UIDVALIDITY). Objects whose last
// reference was in the mailbox are deleted after the commit.
func (a *Account) DeleteMailbox(ctx context.Context, name string) error {
	return a.deleteMailbox(ctx, name)
}

// RenameMailbox renames a mailbox and its children (RFC 3501 §6.3.5).
// Renaming INBOX moves all its messages to a new mailbox named newName and
// leaves INBOX empty (the messages are logged expunged there; INBOX's
// children stay). ErrMailboxExists if newName (or a renamed child's new
// name) exists; ErrBadName for a rename into the mailbox's own subtree.
// A renamed mailbox keeps its GUID and UIDVALIDITY; subscriptions of the
// renamed names follow them. Missing parents of newName are created.
func (a *Account) RenameMailbox(ctx context.Context, oldName, newName string) error {
	return a.renameMailbox(ctx, oldName, newName)
}

// SetSubscribed sets a mailbox name's subscription. Names need not exist
// (RFC 3501 §6.3.6).
func (a *Account) SetSubscribed(ctx context.Context, name string, on bool) error {
	return a.setSubscribed(ctx, name, on)
}

// Subscriptions returns subscribed names, sorted.
func (a *Account) Subscriptions(ctx context.Context) ([]string, error) { return a.subscriptions(ctx) }

// Keywords returns every keyword ever set in the account, in the spelling
// first written, sorted (for the FLAGS and PERMANENTFLAGS responses).
func (a *Account) Keywords(ctx context.Context) ([]string, error) { return a.keywords(ctx) }

// States returns the state of every message in the mailbox, by ascending UID.
// ErrNoMailbox if the mailbox is gone.
func (a *Account) States(ctx context.Context, mailboxID int64) ([]MessageState, error) {
	return a.states(ctx, mailboxID)
}

// Messages calls fn for each message of the mailbox whose UID is in uids
// (ascending), skipping UIDs that no longer exist. Each *Message is a
// fresh value that fn may keep. Rows are read in batches of a few dozen, so fn
// holds no database snapshot; fn may call other Store methods. An error
// from fn stops the walk and is returned as is.
func (a *Account) Messages(ctx context.Context, mailboxID int64, uids []uint32, fn func(*Message) error) error {
	return a.messages(ctx, mailboxID, uids, fn)
}

// OpenBody opens bytes [offset, offset+length) of a message (length < 0:
// to the end), from the read cache or the blob store (a ranged read).
// ErrMissingObject if the blob is gone.
func (a *Account) OpenBody(ctx context.Context, m *Message, offset, length int64) (io.ReadCloser, error) {
	return a.openBody(ctx, m, offset, length)
}

// Incoming is a message spooled (in memory up to MemSpoolMax, else to
// local disk) and parsed, ready to be stored in one or more mailboxes (one
// blob per Append call). Close releases the bytes and removes the spool
// file, if any.
type Incoming struct {
	Parsed *mime.Message
	Size   int64
	SHA256 [32]byte
	// The spooled bytes (private to the package): in memory (mem) up to
	// MemSpoolMax, else in the spool file f at path. spooled is false
	// once closed.
	spooled bool
	mem     []byte
	path    string
	f       *os.File
	idx     *indexData
}

// Close releases the spooled bytes (removes the spool file). Safe to call
// twice.
func (in *Incoming) Close() error { return in.close() }

// Spool streams r into memory, or above MemSpoolMax bytes to a temporary
// file under the store's spool dir,
// computing SHA-256 and parsing the MIME structure, and returns it ready
// for Append. With crlf, lines ending in a bare LF are stored with CRLF
// (LMTP, import); without, bytes are kept exactly (IMAP APPEND). maxSize
// > 0 bounds the stored size (ErrTooLarge, after draining r).
//
// The message is parsed once here (mime.Parse: structure, ENVELOPE,
// BODYSTRUCTURE, the header fields SEARCH and SORT use); every Append of
// it reuses the result. The caller must Close the Incoming.
func (s *Store) Spool(ctx context.Context, r io.Reader, crlf bool, maxSize int64) (*Incoming, error) {
	return s.spool(ctx, r, crlf, maxSize)
}

// AppendResult says where an appended message went (UIDPLUS APPENDUID).
type AppendResult struct {
	MailboxID   int64
	UIDValidity uint32
	UID         uint32
	ModSeq      uint64
}

// Append stores in as a new message in the named mailbox: blob Put, then
// the index row, then watchers are notified. internalDate zero means now.
// Errors: ErrNoMailbox, blob.ErrUnavailable (temporary; nothing was
// committed), ErrOverQuota, ErrBadFlag. When Append returns nil, the
// object and the index row are durable (LMTP may answer 250). INTERNALDATE
// is kept to the second, with its zone offset. Concurrent Appends to one
// mailbox store their objects in parallel and commit in UID order (see
// seq.go for the UID scheme).
func (a *Account) Append(ctx context.Context, mailbox string, in *Incoming, flags []string, internalDate time.Time) (AppendResult, error) {
	return a.appendMsg(ctx, mailbox, in, flags, internalDate)
}

// StoreFlags changes flags of the messages with the given UIDs (RFC 3501
// §6.4.6; RFC 7162 §3.1.3 when unchangedSince > 0: messages whose MODSEQ
// is above it are not changed and are returned in failed). changed holds
// the new state of each message whose flags actually changed (each got a
// new MODSEQ; all messages changed by one call share it). UIDs that do
// not exist are skipped. unchangedSince 0 means no condition. ErrBadFlag
// for an invalid flag; ErrNoMailbox if the mailbox is gone.
func (a *Account) StoreFlags(ctx context.Context, mailboxID int64, uids []uint32, op StoreOp, flags []string, unchangedSince uint64) (changed []MessageState, failed []uint32, err error) {
	return a.storeFlags(ctx, mailboxID, uids, op, flags, unchangedSince)
}

// StoreOp is a flag operation.
type StoreOp int

// Flag operations.
const (
	Replace StoreOp = iota
	Add
	Remove
)

// Expunge removes the messages with the given UIDs that have \Deleted
// (uids nil: all with \Deleted). Returns the UIDs removed, ascending.
// They are logged in the expunge log with one new MODSEQ; objects whose
// last reference went are deleted in the background after the commit
// (deleter.go; Close waits for them).
func (a *Account) Expunge(ctx context.Context, mailboxID int64, uids []uint32) ([]uint32, error) {
	return a.expunge(ctx, mailboxID, uids)
}

// CopyResult maps source UIDs to destination UIDs (UIDPLUS COPYUID).
type CopyResult struct {
	UIDValidity uint32 // of the destination
	SrcUIDs     []uint32
	DstUIDs     []uint32
}

// Copy copies messages to another mailbox of the account, sharing their
// blobs (no new object is written). Flags are copied. One transaction;
// the copies get new UIDs in source UID order and one new MODSEQ of dest.
// UIDs that do not exist are skipped (an empty result is not an error).
// ErrNoMailbox if dest does not exist.
func (a *Account) Copy(ctx context.Context, mailboxID int64, uids []uint32, dest string) (CopyResult, error) {
	return a.copyMsgs(ctx, mailboxID, uids, dest, false)
}

// Move moves messages atomically (RFC 6851): they appear in dest and are
// expunged from the source in one transaction (logged in the source's
// expunge log with one new MODSEQ). ErrSameMailbox if dest is the source.
func (a *Account) Move(ctx context.Context, mailboxID int64, uids []uint32, dest string) (CopyResult, error) {
	return a.copyMsgs(ctx, mailboxID, uids, dest, true)
}

// Changes lists what happened in a mailbox after sinceModSeq: messages
// added or whose flags changed (Updated, ascending UID, with their current
// state) and UIDs expunged (Expunged, ascending). HighestModSeq is the
// mailbox's value at the time of the read. ErrUIDValidity if the mailbox
// (by ID) no longer exists or its UIDVALIDITY is not uidValidity.
type Changes struct {
	HighestModSeq uint64
	UIDNext       uint32
	Updated       []MessageState
	Expunged      []uint32
}

// Changes returns the changes since sinceModSeq.
// Read in one snapshot. sinceModSeq 0 lists every message.
func (a *Account) Changes(ctx context.Context, mailboxID int64, uidValidity uint32, sinceModSeq uint64) (Changes, error) {
	return a.changes(ctx, mailboxID, uidValidity, sinceModSeq)
}

// Watch returns a channel that receives a value (coalesced, never
// blocking the writer) whenever anything in the account changes: a
// message added, flags changed, an expunge, a mailbox created, renamed or
// deleted. The session then calls Changes. stop releases it.
// The channel holds at most one pending value. Notifications are in
// process (a bus comes later); they are sent after the commit.
func (a *Account) Watch() (c <-chan struct{}, stop func()) {
	return a.s.hub.subscribe(a.name)
}
