// Package journal defines the per-account journal and snapshot objects
// that make the bucket self-describing (DESIGN §3): with them and the
// message objects' own metadata, the index can be rebuilt from the
// bucket alone (mailstore.Reindex), downloading no message body.
//
// Keys, beside the account's message objects <hash>/<account>/msg/<ulid>:
//
//	<hash>/<account>/journal/<20-digit seq>    a batch of records
//	<hash>/<account>/snapshot/<20-digit seq>   the whole account state as of seq
//
// (no key is a prefix of another key followed by "/"). seq is a per-account
// counter: a snapshot with seq S covers every journal object with seq <= S;
// those and older snapshots are deleted once it is written.
//
// An object is gzip-compressed JSON lines: a Header, then Records. Records
// are states, not operations ("mailbox GUID g is named n, UIDVALIDITY v,
// UIDNEXT u", "message (g, uid) has key k, flags f, MODSEQ m", "UIDs x of
// g are expunged", "mailbox g is deleted"), so replaying a record twice,
// or a batch that overlaps the previous one, gives the same state:
// replay is idempotent. Replay order is seq order, records in file order.
//
// What is written when (mailstore's journal writer):
//   - Deliveries are not journaled synchronously: the message object itself
//     says where it went (account, mailbox GUID, UIDVALIDITY, UID, flags,
//     INTERNALDATE). The next flush records the placement and the index
//     data the server parsed (ENVELOPE, BODYSTRUCTURE, header, …; a Blob
//     record) so that a rebuild needs no GET of the message.
//   - Flag and keyword changes are batched and written once per flush
//     interval (default 1 s).
//   - COPY, MOVE, EXPUNGE and mailbox create/rename/delete/subscribe are
//     written at once, before the command returns (a failed write is
//     retried by the next flush).
//
// What a crash can lose: at most the flag and keyword changes of the last
// flush interval (the message keeps its previous flags), and the placement
// record of messages delivered in that interval (they are placed again
// from their object metadata, with their UID, and need one GET each to
// re-parse). A delivered message is never lost: its object is written
// (durably) before delivery is acknowledged. If the bucket is unreachable
// while a COPY/MOVE/EXPUNGE/mailbox change is journaled, that change is in
// the same situation as a batched flag change until the bucket returns.
package journal

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bucketmail/bucketmail/internal/blob"
)

// Version is the format version in every Header.
const Version = 1

// Kinds of objects.
const (
	KindJournal  = "journal"
	KindSnapshot = "snapshot"
)

// ErrFormat: an object is not a journal or snapshot this code can read.
var ErrFormat = errors.New("journal: bad object format")

// Header is the first line of an object.
type Header struct {
	V       int       `json:"v"`
	Kind    string    `json:"kind"`
	Account string    `json:"account"`
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	// NextUIDValidity is the account's UIDVALIDITY counter (snapshot).
	NextUIDValidity uint32 `json:"next_uidvalidity,omitempty"`
}

// Record types (Record.T).
const (
	TMailbox   = "mbox"     // Mailbox: state of a mailbox (create, rename, counters)
	TMailboxGo = "mbox-del" // GUID: the mailbox is deleted with its messages
	TSub       = "sub"      // Name: subscribed
	TUnsub     = "unsub"    // Name: not subscribed
	TBlob      = "blob"     // Blob: index data of a message object
	TMessage   = "msg"      // Message: a message's placement and state
	TExpunge   = "exp"      // GUID, UIDs: those messages are gone
)

// Record is one state change. Exactly the fields of its type are set.
type Record struct {
	T       string      `json:"t"`
	Mailbox *Mailbox    `json:"mbox,omitempty"`
	GUID    string      `json:"guid,omitempty"`
	UIDs    []uint32    `json:"uids,omitempty"`
	ModSeq  uint64      `json:"modseq,omitempty"`
	Name    string      `json:"name,omitempty"`
	Blob    *BlobIndex  `json:"blob,omitempty"`
	Message *MessageRec `json:"msg,omitempty"`
}

// Mailbox is the state of a mailbox. Name is UTF-8 ("/" separated).
type Mailbox struct {
	GUID          string `json:"guid"`
	Name          string `json:"name"`
	UIDValidity   uint32 `json:"uidvalidity"`
	UIDNext       uint32 `json:"uidnext"`
	HighestModSeq uint64 `json:"highestmodseq"`
	SpecialUse    string `json:"special_use,omitempty"`
	// Committed is one more than the largest UID of a message or an
	// expunge in the index when the record was written: every UID below
	// it that is not in a Message record was expunged (or moved) by
	// then. UIDNext may be larger (UIDs reserved by deliveries in
	// progress).
	Committed uint32 `json:"committed"`
}

// MessageRec places a message: (GUID, UID) holds the object Key with
// these flags (system flags and keywords) and MODSEQ.
type MessageRec struct {
	GUID         string   `json:"guid"`
	UID          uint32   `json:"uid"`
	Key          string   `json:"key"`
	Flags        []string `json:"flags,omitempty"`
	ModSeq       uint64   `json:"modseq"`
	InternalDate int64    `json:"idate"` // Unix seconds
	InternalTZ   int64    `json:"itz"`   // zone offset, seconds east of UTC
	SaveDate     int64    `json:"sdate"` // Unix seconds
}

// BlobIndex is what the index stores of a message object besides its
// placement: size, SHA-256 and the parsed data that FETCH and SEARCH
// use, so that a rebuild need not download the message.
type BlobIndex struct {
	Key           string `json:"key"`
	Size          int64  `json:"size"`
	SHA256        []byte `json:"sha256"`
	Envelope      Text   `json:"envelope"`
	BodyStructure Text   `json:"bodystructure"`
	Body          Text   `json:"body"`
	Structure     []byte `json:"structure"`
	Header        []byte `json:"header"`
	Subject       Text   `json:"subject,omitempty"`
	From          Text   `json:"from,omitempty"`
	To            Text   `json:"to,omitempty"`
	Cc            Text   `json:"cc,omitempty"`
	Bcc           Text   `json:"bcc,omitempty"`
	Date          *int64 `json:"date,omitempty"`
	MessageID     Text   `json:"message_id,omitempty"`
}

// Text is a string that may hold any bytes (an ENVELOPE quotes 8-bit
// header bytes as they are). Valid UTF-8 is written as a JSON string;
// anything else as {"b64": "<base64>"}, because encoding/json would
// replace invalid bytes with U+FFFD.
type Text string

// MarshalJSON implements json.Marshaler.
func (t Text) MarshalJSON() ([]byte, error) {
	if utf8.ValidString(string(t)) {
		return json.Marshal(string(t))
	}
	return json.Marshal(struct {
		B64 []byte `json:"b64"`
	}{[]byte(t)})
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *Text) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '{' {
		var v struct {
			B64 []byte `json:"b64"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*t = Text(v.B64)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*t = Text(s)
	return nil
}

// Key returns the object key of a journal or snapshot object under an
// account prefix ("<hash>/<account>/", with the trailing slash).
func Key(accountPrefix, kind string, seq uint64) string {
	return fmt.Sprintf("%s%s/%020d", accountPrefix, kind, seq)
}

// ParseKey splits a key made by Key. ok is false for other keys (message
// objects, for example).
func ParseKey(accountPrefix, key string) (kind string, seq uint64, ok bool) {
	rest, found := strings.CutPrefix(key, accountPrefix)
	if !found {
		return "", 0, false
	}
	kind, num, found := strings.Cut(rest, "/")
	if !found || (kind != KindJournal && kind != KindSnapshot) || len(num) != 20 {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return "", 0, false
	}
	return kind, seq, true
}

// AccountPrefix returns the key prefix of all of an account's objects,
// "<hash>/<account>/" (DESIGN §3; mailstore keys messages under it).
// <hash> is the first 4 hex digits of SHA-256(account name); <account> is
// the name made a key segment: [a-zA-Z0-9._+-] kept (not a leading "."),
// every other byte =XX; a segment over 200 bytes is cut at 180 and ends
// in "==" plus 16 hex digits of SHA-256(account).
func AccountPrefix(account string) string {
	h := sha256.Sum256([]byte(account))
	return hex.EncodeToString(h[:2]) + "/" + AccountSegment(account) + "/"
}

// AccountSegment is the <account> segment of AccountPrefix.
func AccountSegment(account string) string {
	var b strings.Builder
	for i := 0; i < len(account); i++ {
		c := account[i]
		keep := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '+' || c == '-' || (c == '.' && i > 0)
		if keep {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	s := b.String()
	if len(s) > 200 {
		cut := 180
		for cut > 0 && (s[cut-1] == '=' || (cut >= 2 && s[cut-2] == '=')) {
			cut--
		}
		h := sha256.Sum256([]byte(account))
		s = s[:cut] + "==" + hex.EncodeToString(h[:8])
	}
	return s
}

// Writer builds one object in a temporary file (records can be many:
// a snapshot holds every message of an account), then Puts it.
type Writer struct {
	f   *os.File
	zw  *gzip.Writer
	bw  *bufio.Writer
	enc *json.Encoder
	n   int
}

// NewWriter starts an object in dir (a local directory) with header h.
// The temporary file is named in-journal-* (mailstore's spool cleaner
// removes such files left by a crash).
func NewWriter(dir string, h Header) (*Writer, error) {
	f, err := os.CreateTemp(dir, "in-journal-*")
	if err != nil {
		return nil, fmt.Errorf("journal: new writer: %w", err)
	}
	w := &Writer{f: f}
	w.bw = bufio.NewWriterSize(f, 64<<10)
	// BestSpeed: a journal object is written on the command path's
	// heels and read only by a rebuild; level 1 is several times
	// cheaper than the default and still shrinks JSON well.
	w.zw, _ = gzip.NewWriterLevel(w.bw, gzip.BestSpeed)
	w.enc = json.NewEncoder(w.zw)
	h.V = Version
	if err := w.enc.Encode(h); err != nil {
		w.Close()
		return nil, fmt.Errorf("journal: new writer: %w", err)
	}
	return w, nil
}

// Add appends a record.
func (w *Writer) Add(r Record) error {
	w.n++
	if err := w.enc.Encode(r); err != nil {
		return fmt.Errorf("journal: add: %w", err)
	}
	return nil
}

// Len returns the number of records added.
func (w *Writer) Len() int { return w.n }

// Put finishes the object and stores it under key.
func (w *Writer) Put(ctx context.Context, store blob.Store, key string) error {
	if err := w.zw.Close(); err != nil {
		return fmt.Errorf("journal: put %s: %w", key, err)
	}
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("journal: put %s: %w", key, err)
	}
	size, err := w.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("journal: put %s: %w", key, err)
	}
	meta := blob.Metadata{"v": strconv.Itoa(Version)}
	if err := store.Put(ctx, key, io.NewSectionReader(w.f, 0, size), size, meta); err != nil {
		return fmt.Errorf("journal: put %s: %w", key, err)
	}
	return nil
}

// Close removes the temporary file. Safe after Put and twice.
func (w *Writer) Close() error {
	if w.f == nil {
		return nil
	}
	w.f.Close()
	err := os.Remove(w.f.Name())
	w.f = nil
	return err
}

// Read streams the object at key: its header, then fn for each record.
// An error from fn stops the read and is returned.
func Read(ctx context.Context, store blob.Store, key string, fn func(Header, Record) error) (Header, error) {
	var h Header
	rc, err := store.NewRangeReader(ctx, key, 0, -1)
	if err != nil {
		return h, fmt.Errorf("journal: read %s: %w", key, err)
	}
	defer rc.Close()
	zr, err := gzip.NewReader(bufio.NewReaderSize(rc, 64<<10))
	if err != nil {
		return h, fmt.Errorf("journal: read %s: %w: %w", key, ErrFormat, err)
	}
	dec := json.NewDecoder(zr)
	if err := dec.Decode(&h); err != nil {
		return h, fmt.Errorf("journal: read %s: %w: header: %w", key, ErrFormat, err)
	}
	if h.V != Version || (h.Kind != KindJournal && h.Kind != KindSnapshot) {
		return h, fmt.Errorf("journal: read %s: %w: version %d kind %q", key, ErrFormat, h.V, h.Kind)
	}
	for {
		var r Record
		err := dec.Decode(&r)
		if errors.Is(err, io.EOF) {
			return h, nil
		}
		if err != nil {
			return h, fmt.Errorf("journal: read %s: %w: %w", key, ErrFormat, err)
		}
		if err := fn(h, r); err != nil {
			return h, err
		}
	}
}
