// Package imapwire is IMAP syntax (RFC 3501 §9, RFC 9051 §9): a streaming
// command decoder (atoms, strings, literals with LITERAL+/LITERAL-, lists,
// sequence sets, search keys, fetch items) and a response encoder. It knows
// nothing of mailboxes or storage; imapserver drives it.
//
// # Driving the decoder
//
// The decoder reads one command line token by token; the server knows the
// grammar of each command and calls the matching methods in order. A
// command loop looks like this:
//
//	for {
//		tag, err := d.Tag()             // skips empty lines; io.EOF at a clean end
//		if err == nil {
//			err = d.SP()
//		}
//		var name string
//		if err == nil {
//			name, err = d.Atom()        // upper-case it; "UID" is followed by SP and another atom
//		}
//		if err == nil {
//			err = dispatch(tag, strings.ToUpper(name)) // reads the arguments, then d.CRLF(), then executes
//		}
//		var se *imapwire.SyntaxError
//		switch {
//		case err == nil:
//			continue
//		case !errors.As(err, &se):
//			return err // I/O error (io.EOF, io.ErrUnexpectedEOF, timeout): close
//		case errors.Is(err, imapwire.ErrBadCharset):
//			reply(tag, "NO [BADCHARSET (UTF-8 US-ASCII)] "+se.Msg)
//		case errors.Is(err, imapwire.ErrLiteralTooLarge) && name == "APPEND":
//			reply(tag, "NO [TOOBIG] "+se.Msg)
//		default:
//			reply(tag, "BAD "+se.Msg) // "* BAD" when Tag failed (tag == "")
//		}
//		if err := d.DiscardLine(); err != nil {
//			return err // only I/O errors
//		}
//	}
//
// Inside dispatch, arguments are read with SP between them exactly where
// the grammar has SP, e.g. LOGIN: SP, AString, SP, AString, CRLF. SELECT:
// SP, MailboxUTF8 (or Mailbox for the wire form), then an optional
// parameter list when PeekByte is ' ', CRLF. FETCH: SP, SeqSet, SP,
// FetchItems, CRLF. STORE: SP, SeqSet, SP, Store, CRLF. SEARCH: Search
// (it reads its own leading SP), CRLF. APPEND: SP, Mailbox, SP, then while
// PeekByte is '(' FlagList+SP, '"' DateTime+SP, else LiteralHeader —
// check the mailbox and size, then AcceptLiteral (which sends "+") and
// stream the reader to the store (never buffer it whole), then CRLF; or
// answer NO [TRYCREATE] / NO [TOOBIG] and DiscardLine without "+". Where the
// grammar has an option, PeekByte or AtEOL decides. Only after the final
// CRLF has succeeded does the server act on the command, so a syntax
// error never has a side effect.
//
// For APPEND that means the message is staged while the literal is read
// and committed after CRLF.
//
// Literals: for a synchronizing literal {n} the decoder calls the Continue
// function (which writes "+ Ready" and flushes) only when the literal is
// within limits; a refused one gets no "+", so the client sends nothing
// and DiscardLine knows the line ended there. Non-synchronizing {n+}
// literals (RFC 7888 LITERAL+; LITERAL- via MaxLiteralPlus) are always
// followed by their bytes, which DiscardLine skips. Limits: MaxLine bytes
// of a command line outside literals, MaxLiteral for literals read into
// strings, MaxStream for Literal, MaxSearchDepth for SEARCH nesting.
//
// AUTHENTICATE: after the server writes "+ <challenge>" it calls
// AuthResponse, which reads a line of its own (not part of the command
// line) and decodes it; ErrAuthCancelled means the client sent "*".
//
// Every error message of a *SyntaxError is meant for the client: it names
// what was expected and what was found ("expected SP, found \")\"").
// Errors that are not *SyntaxError are I/O errors; io.ErrUnexpectedEOF is
// the client going away in the middle of a line.
//
// UTF-8: set Decoder.UTF8 and Encoder.UTF8 after ENABLE UTF8=ACCEPT or
// when IMAP4rev2 is in effect (RFC 6855, RFC 9051): quoted strings may then
// carry UTF-8 and mailbox names travel as UTF-8 instead of modified UTF-7.
//
// # Encoder
//
// The Encoder writes to a bufio.Writer with chained calls and no
// allocation for numbers, dates, strings and literal headers, e.g.
//
//	e.Atom("*").SP().Number(seq).SP().Atom("FETCH").SP().BeginList().
//		Atom("UID").SP().Number(uid).SP().Atom("BODY[]").SP().LiteralHeader(size, false)
//	// then stream size bytes with e.Write, then e.EndList().CRLF()
//
// String picks quoted form or a literal by content; AString and Mailbox
// write atoms when they can.
//
// The types in types.go are the contract between imapwire and imapserver.
package imapwire
