package mime

import (
	"bytes"
	"strings"
)

// envelope collects the ENVELOPE fields of one header (RFC 3501 §7.4.2).
// As in Dovecot, a repeated string field (Date, Subject, In-Reply-To,
// Message-ID) keeps its last occurrence and repeated address fields are
// concatenated.
type envelope struct {
	date, subject, inReplyTo, messageID string
	hasDate, hasSubject, hasInReplyTo   bool
	hasMessageID                        bool
	from, sender, replyTo, to, cc, bcc  []Address
	hasFrom, hasSender, hasReplyTo      bool
	hasTo, hasCc, hasBcc                bool
}

// isEnvelopeField reports whether a header field name feeds the ENVELOPE.
func isEnvelopeField(name []byte) bool {
	switch len(name) {
	case 2:
		return equalFoldB(name, "to") || equalFoldB(name, "cc")
	case 3:
		return equalFoldB(name, "bcc")
	case 4:
		return equalFoldB(name, "date") || equalFoldB(name, "from")
	case 6:
		return equalFoldB(name, "sender")
	case 7:
		return equalFoldB(name, "subject")
	case 8:
		return equalFoldB(name, "reply-to")
	case 10:
		return equalFoldB(name, "message-id")
	case 11:
		return equalFoldB(name, "in-reply-to")
	}
	return false
}

func equalFoldB(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

// add feeds one header field. rawField is the whole field as written;
// value is its unfolded value.
func (e *envelope) add(name string, rawField []byte, value string) {
	var addrs *[]Address
	var has *bool
	switch {
	case equalFold(name, "date"):
		e.date, e.hasDate = envString(value), true
		return
	case equalFold(name, "subject"):
		// The subject keeps its line breaks: Dovecot folds white space
		// itself and sends a folded subject as a literal.
		e.subject, e.hasSubject = envString(string(fullValue(rawField))), true
		return
	case equalFold(name, "in-reply-to"):
		e.inReplyTo, e.hasInReplyTo = envString(value), true
		return
	case equalFold(name, "message-id"):
		e.messageID, e.hasMessageID = envString(value), true
		return
	case equalFold(name, "from"):
		addrs, has = &e.from, &e.hasFrom
	case equalFold(name, "sender"):
		addrs, has = &e.sender, &e.hasSender
	case equalFold(name, "reply-to"):
		addrs, has = &e.replyTo, &e.hasReplyTo
	case equalFold(name, "to"):
		addrs, has = &e.to, &e.hasTo
	case equalFold(name, "cc"):
		addrs, has = &e.cc, &e.hasCc
	case equalFold(name, "bcc"):
		addrs, has = &e.bcc, &e.hasBcc
	default:
		return
	}
	list := ParseAddressList(value)
	if len(list) > 0 {
		*addrs = append(*addrs, list...)
		*has = true
	}
}

// envString turns a header value into an ENVELOPE string: NUL becomes
// U+FFFD (Dovecot's message_header_strdup).
func envString(v string) string {
	if strings.IndexByte(v, 0) < 0 {
		return v
	}
	return strings.ReplaceAll(v, "\x00", replacementChar)
}

// fullValue returns a field's value with its line breaks kept: after the
// colon and leading white space, without the final line break.
func fullValue(rawField []byte) []byte {
	colon := bytes.IndexByte(rawField, ':')
	if colon < 0 {
		return nil
	}
	v := rawField[colon+1:]
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	return trimEOL(v)
}

func (e *envelope) encode() string {
	b := make([]byte, 0, 256)
	b = append(b, '(')
	b = appendNString(b, e.date, e.hasDate)
	b = append(b, ' ')
	if e.hasSubject {
		b = appendHumanString(b, e.subject)
	} else {
		b = append(b, "NIL"...)
	}
	b = append(b, ' ')
	b = appendAddresses(b, e.from)
	b = append(b, ' ')
	if e.hasSender {
		b = appendAddresses(b, e.sender)
	} else {
		b = appendAddresses(b, e.from)
	}
	b = append(b, ' ')
	if e.hasReplyTo {
		b = appendAddresses(b, e.replyTo)
	} else {
		b = appendAddresses(b, e.from)
	}
	b = append(b, ' ')
	b = appendAddresses(b, e.to)
	b = append(b, ' ')
	b = appendAddresses(b, e.cc)
	b = append(b, ' ')
	b = appendAddresses(b, e.bcc)
	b = append(b, ' ')
	b = appendNString(b, e.inReplyTo, e.hasInReplyTo)
	b = append(b, ' ')
	b = appendNString(b, e.messageID, e.hasMessageID)
	b = append(b, ')')
	return string(b)
}

func appendAddresses(b []byte, list []Address) []byte {
	if len(list) == 0 {
		return append(b, "NIL"...)
	}
	b = append(b, '(')
	for _, a := range list {
		b = append(b, '(')
		if a.HasName {
			b = appendHumanString(b, a.Name)
		} else {
			b = append(b, "NIL"...)
		}
		b = append(b, ' ')
		b = appendNString(b, a.Route, a.HasRoute)
		b = append(b, ' ')
		b = appendNString(b, a.Mailbox, a.HasMailbox)
		b = append(b, ' ')
		b = appendNString(b, a.Domain, a.HasDomain)
		b = append(b, ')')
	}
	return append(b, ')')
}

// Envelope returns the IMAP ENVELOPE of a message whose header is h,
// encoded as IMAP syntax (RFC 3501 §7.4.2), byte for byte as Dovecot 2.3
// writes it (see the package doc for the string rules).
func Envelope(h Header) string {
	var e envelope
	for _, f := range h {
		raw := f.Raw
		if raw == nil {
			raw = []byte(f.Name + ": " + f.Value)
		}
		e.add(f.Name, raw, f.Value)
	}
	return e.encode()
}
