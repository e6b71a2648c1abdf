// Package delivery stores incoming mail transactionally: resolve each
// recipient, spool and parse the message once, store it in each
// recipient's INBOX, and report a result per recipient. LMTP (and later
// other front ends) turn the results into protocol replies; this package
// knows no protocol codes, only whether a failure is temporary or
// permanent.
//
// # Commit order
//
// For each recipient: mailstore Account.Append puts the blob (durable),
// commits the index row, then notifies IMAP sessions (DESIGN §2). A
// Result with a nil Err means both are durable; only then may a front end
// say "250". Anything else is a failure for that recipient, and nothing
// was committed for it.
//
// # Added header fields
//
// Like Dovecot's LMTP, each stored message starts with header fields that
// record the delivery, in this order:
//
//	Return-Path: <sender>        (RFC 5321 §4.4; <> for the null sender)
//	Delivered-To: <rcpt>         (only when the transaction has ONE recipient)
//	Received: from helo ([ip])   (RFC 5321 §4.4; "for <rcpt>" only with one recipient)
//	        by hostname with LMTP id ID  (LMTPS under TLS, RFC 3848)
//	        (envelope-from <sender>)
//	        for <rcpt>; date
//
// Delivered-To names the recipient as given in RCPT TO. It differs per
// recipient, and the message is spooled and parsed once per transaction
// ("parse once", DESIGN §2) and then stored for every recipient from that
// one spool file. We do what Dovecot does (its lmtp_hdr_delivery_address
// is "none" whenever a mail has several recipients): a transaction with
// several recipients gets no Delivered-To and no "for" clause, so every
// copy has the same bytes. The cost: loop detection by Delivered-To only
// works for single-recipient transactions (Postfix sends one recipient per
// transaction with lmtp_destination_recipient_limit = 1). The alternative,
// spooling once per recipient, would parse and write the message N times.
//
// # Line endings and size
//
// The message is spooled with crlf = true: lines ending in a bare LF are
// stored with CRLF, so IMAP serves RFC 5322 line endings and RFC822.SIZE
// counts them. MaxSize bounds the stored message less the added header
// fields (CRLF conversion counts).
//
// Recipients that resolve to the same account get one copy; each of them
// gets that copy's result.
package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/mailstore"
	"github.com/bucketmail/bucketmail/internal/userdb"
)

// Errors. Every error this package returns wraps exactly one of
// ErrTemporary and ErrPermanent, and, where it applies, one of the more
// specific sentinels below; test with errors.Is.
var (
	// ErrTemporary: try again later (LMTP 4xx). Storage or user database
	// unavailable, deadline, shutdown, or an unexpected error.
	ErrTemporary = errors.New("delivery: temporary failure")
	// ErrPermanent: do not try again (LMTP 5xx).
	ErrPermanent = errors.New("delivery: permanent failure")

	ErrUnknownRecipient = errors.New("delivery: unknown recipient")     // permanent; LMTP 550 5.1.1
	ErrDisabled         = errors.New("delivery: recipient disabled")    // permanent; LMTP 550 5.2.1
	ErrBadAddress       = errors.New("delivery: bad recipient address") // permanent; LMTP 501 5.1.3
	ErrTooLarge         = errors.New("delivery: message too large")     // permanent; LMTP 552 5.3.4
	ErrOverQuota        = errors.New("delivery: mailbox over quota")    // permanent; LMTP 552 5.2.2
)

// Temporary reports whether err is a temporary failure. Errors not made
// by this package count as temporary: losing mail is worse than a retry.
func Temporary(err error) bool {
	return err != nil && !errors.Is(err, ErrPermanent)
}

// classError is an error classified temporary or permanent. Its text is
// "delivery: op key: kind: cause" without the class; errors.Is sees the
// class, the kind and the cause.
type classError struct {
	op, key     string
	class, kind error // kind may be nil
	err         error // may be nil
}

func (e *classError) Error() string {
	s := "delivery: " + e.op + " " + e.key
	if e.kind != nil {
		s += ": " + strings.TrimPrefix(e.kind.Error(), "delivery: ")
	}
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

func (e *classError) Unwrap() []error {
	errs := []error{e.class}
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	if e.err != nil {
		errs = append(errs, e.err)
	}
	return errs
}

func temporary(op, key string, err error) error {
	return &classError{op: op, key: key, class: ErrTemporary, err: err}
}

func permanent(op, key string, kind, err error) error {
	return &classError{op: op, key: key, class: ErrPermanent, kind: kind, err: err}
}

// Deliverer delivers messages to local accounts. Its fields are set once
// before use; it is safe for concurrent use.
type Deliverer struct {
	Store *mailstore.Store
	Users userdb.UserDB
	// Delimiter is the recipient delimiter ("+"); "" turns it off.
	Delimiter string
	// Policy normalises recipient addresses (TOML auth.local_part_case,
	// auth.normalize); it must be the user database's. Zero: lower-cased, NFC.
	Policy userdb.AddressPolicy
	// MaxSize bounds a message in bytes (see the package doc); <= 0: no limit.
	MaxSize int64
	// Hostname appears in the Received field.
	Hostname string
	Logger   *slog.Logger
}

// Recipient is a resolved recipient.
type Recipient struct {
	Address string // as given in RCPT TO, without angle brackets
	User    *userdb.User
}

// Resolve finds the account for a recipient address (RCPT TO time). The
// address is normalised (Policy.Normalize) and looked up as it is, then,
// if unknown, with the recipient-delimiter detail removed. Errors:
// ErrBadAddress, ErrUnknownRecipient, ErrDisabled (permanent);
// userdb.ErrUnavailable or any other lookup failure (temporary).
func (d *Deliverer) Resolve(ctx context.Context, address string) (Recipient, error) {
	norm := d.Policy.Normalize(address)
	if norm == "" || strings.ContainsAny(norm, " \t\r\n<>") {
		return Recipient{}, permanent("resolve", fmt.Sprintf("%q", address), ErrBadAddress, nil)
	}
	u, err := d.Users.Lookup(ctx, norm)
	if errors.Is(err, userdb.ErrNotFound) {
		if stripped := userdb.StripDelimiter(norm, d.Delimiter); stripped != norm {
			u, err = d.Users.Lookup(ctx, stripped)
		}
	}
	switch {
	case errors.Is(err, userdb.ErrNotFound):
		return Recipient{}, permanent("resolve", norm, ErrUnknownRecipient, nil)
	case err != nil:
		return Recipient{}, temporary("resolve", norm, err)
	case u.Disabled:
		return Recipient{}, permanent("resolve", norm, ErrDisabled, nil)
	}
	return Recipient{Address: address, User: u}, nil
}

// Envelope describes one transaction.
type Envelope struct {
	From       string // reverse-path without angle brackets; "" is the null sender
	Recipients []Recipient
	Helo       string // the client's LHLO name, for Received
	RemoteAddr string // the client's IP address, for Received; "" when unknown (unix socket)
	ID         string // transaction id, for Received and logs
	TLS        bool   // the session is under TLS: Received says "with LMTPS" (RFC 3848)
}

// Result is the outcome for one recipient, in the order of
// Envelope.Recipients.
type Result struct {
	Recipient   Recipient
	UIDValidity uint32 // of INBOX, when Err is nil
	UID         uint32 // when Err is nil
	Err         error  // nil: stored durably
}

// srcReader remembers the first error of the message source, so that a
// failure to read the message is told apart from a failure to store it.
type srcReader struct {
	r   io.Reader
	n   int64
	err error
}

func (s *srcReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// Deliver reads the message from r and stores it in the INBOX of every
// recipient. It returns one Result per recipient. r may fail with an
// error wrapping ErrTooLarge to say the sender went over a limit it
// enforces (the LMTP layer does); any other read error is temporary.
// r is not read to the end after a failure: the caller drains it.
func (d *Deliverer) Deliver(ctx context.Context, env Envelope, r io.Reader) []Result {
	results := make([]Result, len(env.Recipients))
	for i, rc := range env.Recipients {
		results[i].Recipient = rc
	}
	if len(env.Recipients) == 0 {
		return results
	}
	log := d.logger().With("id", env.ID, "from", env.From)
	fail := func(err error) []Result {
		for i := range results {
			results[i].Err = err
		}
		return results
	}

	prefix := d.prefix(env, time.Now())
	var limit int64
	if d.MaxSize > 0 {
		limit = d.MaxSize + int64(len(prefix))
	}
	src := &srcReader{r: r}
	in, err := d.Store.Spool(ctx, io.MultiReader(bytes.NewReader(prefix), src), true, limit)
	if err != nil {
		err = d.classifySpool(ctx, src, err)
		log.Warn("delivery: message not spooled", "bytes", src.n, "temporary", Temporary(err), "err", err)
		return fail(err)
	}
	defer in.Close()

	// One copy per account.
	type copyResult struct {
		res mailstore.AppendResult
		err error
	}
	done := make(map[string]copyResult)
	for i, rc := range env.Recipients {
		acct := rc.User.Account
		cr, ok := done[acct]
		if !ok {
			cr.res, cr.err = d.store(ctx, rc.User, in)
			done[acct] = cr
			if cr.err != nil {
				log.Warn("delivery: not stored", "rcpt", rc.Address, "account", acct,
					"temporary", Temporary(cr.err), "err", cr.err)
			} else {
				log.Info("delivery: stored", "rcpt", rc.Address, "account", acct,
					"uid", cr.res.UID, "size", in.Size)
			}
		}
		results[i].Err = cr.err
		results[i].UID = cr.res.UID
		results[i].UIDValidity = cr.res.UIDValidity
	}
	return results
}

func (d *Deliverer) logger() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}

// classifySpool turns a Spool failure into a delivery error.
func (d *Deliverer) classifySpool(ctx context.Context, src *srcReader, err error) error {
	switch {
	case src.err != nil && errors.Is(src.err, ErrTooLarge):
		return permanent("spool", "message", ErrTooLarge, src.err)
	case errors.Is(err, mailstore.ErrTooLarge):
		return permanent("spool", "message", ErrTooLarge, err)
	case src.err != nil:
		return temporary("read", "message", src.err)
	case ctx.Err() != nil:
		return temporary("spool", "message", errors.Join(ctx.Err(), err))
	}
	return temporary("spool", "message", err)
}

// store appends in to the user's INBOX, after checking the user's quota
// (userdb.User.QuotaBytes > 0: the sum of RFC822.SIZE over all
// mailboxes, this message included, may not exceed it; RFC 9208 STORAGE
// counts the same octets in KiB).
func (d *Deliverer) store(ctx context.Context, u *userdb.User, in *mailstore.Incoming) (mailstore.AppendResult, error) {
	account := u.Account
	a, err := d.Store.Account(ctx, account)
	if err != nil {
		return mailstore.AppendResult{}, temporary("open account", account, err)
	}
	if u.QuotaBytes > 0 {
		mbs, err := a.Mailboxes(ctx)
		if err != nil {
			return mailstore.AppendResult{}, temporary("quota", account, err)
		}
		used := in.Size
		for _, mb := range mbs {
			used += mb.Size
		}
		if used > u.QuotaBytes {
			return mailstore.AppendResult{}, permanent("quota", account, ErrOverQuota,
				fmt.Errorf("%d bytes with this message, quota %d", used, u.QuotaBytes))
		}
	}
	res, err := a.Append(ctx, "INBOX", in, nil, time.Time{})
	switch {
	case err == nil:
		return res, nil
	case errors.Is(err, mailstore.ErrOverQuota):
		return res, permanent("append", account, ErrOverQuota, err)
	case errors.Is(err, mailstore.ErrTooLarge):
		return res, permanent("append", account, ErrTooLarge, err)
	case errors.Is(err, blob.ErrUnavailable), ctx.Err() != nil:
		return res, temporary("append", account, err)
	}
	return res, temporary("append", account, err)
}

// prefix returns the header fields added in front of the message (see
// the package doc), with CRLF line ends.
func (d *Deliverer) prefix(env Envelope, now time.Time) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Return-Path: <%s>\r\n", headerSafe(env.From))
	single := len(env.Recipients) == 1
	if single {
		fmt.Fprintf(&b, "Delivered-To: %s\r\n", headerSafe(env.Recipients[0].Address))
	}
	b.WriteString("Received: from ")
	helo := headerSafe(env.Helo)
	if helo == "" {
		helo = "unknown"
	}
	b.WriteString(helo)
	if ip := headerSafe(env.RemoteAddr); ip != "" {
		fmt.Fprintf(&b, " ([%s])", ip)
	}
	proto := "LMTP"
	if env.TLS {
		proto = "LMTPS"
	}
	fmt.Fprintf(&b, "\r\n\tby %s with %s", headerSafe(d.Hostname), proto)
	if id := headerSafe(env.ID); id != "" {
		fmt.Fprintf(&b, " id %s", id)
	}
	fmt.Fprintf(&b, "\r\n\t(envelope-from <%s>)", headerSafe(env.From))
	if single {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", headerSafe(env.Recipients[0].Address))
	}
	fmt.Fprintf(&b, "; %s\r\n", now.Format(time.RFC1123Z))
	return b.Bytes()
}

// headerSafe drops bytes that could break a header line (CR, LF, other
// controls); go-smtp already rejects such addresses, this is a second
// fence.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
