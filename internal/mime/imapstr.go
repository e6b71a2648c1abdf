package mime

import "strconv"

// IMAP string encoding (RFC 3501 §4.3, §9 string/quoted/literal) the way
// Dovecot writes BODYSTRUCTURE and ENVELOPE, so the bytes match:
//   - a string holding CR, LF or an 8-bit byte, or more than four
//     characters that need a backslash, is sent as a literal {n}CRLF...;
//   - otherwise it is quoted, with '"' and '\' escaped;
//   - a NUL ends the string (Dovecot keeps them as C strings).

// appendString appends s as an IMAP string.
func appendString(dst []byte, s string) []byte {
	s = cstr(s)
	escapes := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			escapes++
			if escapes > 4 {
				return appendLiteral(dst, s)
			}
		case c == '\r' || c == '\n' || c >= 0x80:
			return appendLiteral(dst, s)
		}
	}
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return append(dst, '"')
}

func appendLiteral(dst []byte, s string) []byte {
	dst = append(dst, '{')
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, "}\r\n"...)
	return append(dst, s...)
}

// appendNString appends NIL when !ok, else s with CR and LF removed as an
// IMAP string (Dovecot's imap_append_nstring_nolf).
func appendNString(dst []byte, s string, ok bool) []byte {
	if !ok {
		return append(dst, "NIL"...)
	}
	s = cstr(s)
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' || s[i] == '\n' {
			b := make([]byte, 0, len(s))
			for j := 0; j < len(s); j++ {
				if s[j] != '\r' && s[j] != '\n' {
					b = append(b, s[j])
				}
			}
			return appendString(dst, string(b))
		}
	}
	return appendString(dst, s)
}

// appendHumanString appends s for a human reader, as Dovecot does for the
// ENVELOPE subject (imap_append_string_for_humans): runs of white space
// (SP, TAB, CR, LF) become one space, leading and trailing white space is
// dropped and NUL becomes 0x80; a string that had to be changed this way,
// or holds '"', '\' or 8-bit bytes, is sent as a literal.
func appendHumanString(dst []byte, s string) []byte {
	modify := false
	lastLWSP := true
	remove := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0:
			lastLWSP = false
			modify = true
		case '\r', '\n', '\t':
			modify = true
			if lastLWSP {
				remove++
			}
			lastLWSP = true
		case ' ':
			if lastLWSP {
				modify = true
				remove++
			}
			lastLWSP = true
		case '"', '\\':
			modify = true
			lastLWSP = false
		default:
			if c >= 0x80 {
				modify = true
			}
			lastLWSP = false
		}
	}
	if lastLWSP && len(s) > 0 {
		modify = true
		remove++
	}
	if !modify {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	if remove >= len(s) {
		return append(dst, `""`...)
	}
	dst = append(dst, '{')
	dst = strconv.AppendInt(dst, int64(len(s)-remove), 10)
	dst = append(dst, "}\r\n"...)
	pos := len(dst)
	lastLWSP = true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0:
			dst = append(dst, 0x80)
			lastLWSP = false
		case '\r', '\n', '\t', ' ':
			if !lastLWSP {
				dst = append(dst, ' ')
			}
			lastLWSP = true
		default:
			dst = append(dst, c)
			lastLWSP = false
		}
	}
	if lastLWSP && len(dst) > pos {
		dst = dst[:len(dst)-1]
	}
	return dst
}
