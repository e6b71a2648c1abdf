package imapwire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// countingReader counts the bytes handed to the bufio.Reader.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// command parses one command after its tag the way a server does, and
// returns a one-line summary of what it read.
func command(d *Decoder) (string, error) {
	if err := d.SP(); err != nil {
		return "", err
	}
	name, err := d.Atom()
	if err != nil {
		return "", err
	}
	name = strings.ToUpper(name)
	uid := ""
	if name == "UID" {
		if err := d.SP(); err != nil {
			return "", err
		}
		if name, err = d.Atom(); err != nil {
			return "", err
		}
		name, uid = strings.ToUpper(name), "UID "
	}
	var out string
	switch name {
	case "NOOP", "CAPABILITY", "LOGOUT", "IDLE":
		out = name
	case "LOGIN":
		var u, p string
		if err = d.SP(); err == nil {
			if u, err = d.AString(); err == nil {
				if err = d.SP(); err == nil {
					p, err = d.AString()
				}
			}
		}
		out = fmt.Sprintf("LOGIN %q %q", u, p)
	case "SELECT", "CREATE", "DELETE":
		var m string
		if err = d.SP(); err == nil {
			m, err = d.MailboxUTF8()
		}
		out = fmt.Sprintf("%s %q", name, m)
	case "LIST":
		var ref, pat string
		if err = d.SP(); err == nil {
			if ref, err = d.Mailbox(); err == nil {
				if err = d.SP(); err == nil {
					pat, err = d.ListMailbox()
				}
			}
		}
		out = fmt.Sprintf("LIST %q %q", ref, pat)
	case "STATUS":
		var m string
		var items []StatusItem
		if err = d.SP(); err == nil {
			if m, err = d.Mailbox(); err == nil {
				if err = d.SP(); err == nil {
					items, err = d.StatusItems()
				}
			}
		}
		out = fmt.Sprintf("STATUS %q %v", m, items)
	case "SEARCH":
		var c *SearchCommand
		c, err = d.Search()
		if err == nil {
			out = fmt.Sprintf("%sSEARCH %s", uid, c.Key.String())
		}
	case "FETCH":
		var set SeqSet
		var items []FetchItem
		if err = d.SP(); err == nil {
			if set, err = d.SeqSet(); err == nil {
				if err = d.SP(); err == nil {
					items, err = d.FetchItems()
				}
			}
		}
		out = fmt.Sprintf("%sFETCH %d ranges %d items", uid, len(set.Ranges), len(items))
	case "STORE":
		var c *StoreCommand
		if err = d.SP(); err == nil {
			if _, err = d.SeqSet(); err == nil {
				if err = d.SP(); err == nil {
					c, err = d.Store()
				}
			}
		}
		if err == nil {
			out = fmt.Sprintf("%sSTORE %d %v", uid, c.Op, c.Flags)
		}
	case "APPEND":
		var m string
		var n int64
		if err = d.SP(); err == nil {
			if m, err = d.Mailbox(); err == nil {
				err = d.SP()
			}
		}
		for err == nil {
			var c byte
			if c, err = d.PeekByte(); err != nil {
				break
			}
			if c == '(' {
				if _, err = d.FlagList(); err == nil {
					err = d.SP()
				}
			} else if c == '"' {
				if _, err = d.DateTime(); err == nil {
					err = d.SP()
				}
			} else {
				var r io.Reader
				if n, _, err = d.LiteralHeader(); err != nil {
					break
				}
				if strings.EqualFold(m, "nosuch") {
					// Refused before "+", as for NO [TRYCREATE].
					return "", synErr("no such mailbox")
				}
				if r, err = d.AcceptLiteral(); err == nil {
					_, err = io.Copy(io.Discard, r)
				}
				break
			}
		}
		out = fmt.Sprintf("APPEND %q %d bytes", m, n)
	case "AUTHENTICATE":
		var mech string
		if err = d.SP(); err == nil {
			mech, err = d.Atom()
		}
		if err == nil && !d.AtEOL() {
			var ir string
			if err = d.SP(); err == nil {
				if ir, err = d.Atom(); err == nil {
					_, err = DecodeAuthData(ir)
				}
			}
		} else if err == nil {
			if err = d.CRLF(); err != nil {
				return "", err
			}
			var b []byte
			b, err = d.AuthResponse(1024)
			return fmt.Sprintf("AUTHENTICATE %s %q", mech, b), err
		}
		out = "AUTHENTICATE " + mech
	default:
		return "", synErr("unknown command %q", name)
	}
	if err != nil {
		return "", err
	}
	return out, d.CRLF()
}

// serve runs a command loop over in and returns the transcript.
func serve(t testing.TB, in string, maxLine int) []string {
	cr := &countingReader{r: strings.NewReader(in)}
	br := bufio.NewReaderSize(cr, 16)
	var log []string
	d := NewDecoder(br, func() error { log = append(log, "+"); return nil })
	d.MaxLine = maxLine
	d.MaxLiteral = 1024
	for {
		before := cr.n - int64(br.Buffered())
		tag, err := d.Tag()
		var res string
		if err == nil {
			res, err = command(d)
		}
		if err == nil {
			log = append(log, tag+" OK "+res)
			continue
		}
		var se *SyntaxError
		if !errors.As(err, &se) && err != ErrAuthCancelled {
			if err != io.EOF && err != io.ErrUnexpectedEOF {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return log
		}
		if tag == "" {
			tag = "*"
		}
		if se != nil {
			for i := 0; i < len(se.Msg); i++ {
				if c := se.Msg[i]; c < 0x20 || c > 0x7e {
					t.Fatalf("error message %q is not printable US-ASCII", se.Msg)
				}
			}
		}
		log = append(log, tag+" BAD "+se.msg())
		if err == ErrAuthCancelled {
			continue
		}
		if err := d.DiscardLine(); err != nil {
			if err != io.ErrUnexpectedEOF {
				t.Fatalf("DiscardLine: %v", err)
			}
			return log
		}
		if d.inLine || d.pending != 0 {
			t.Fatalf("DiscardLine left inLine=%v pending=%d", d.inLine, d.pending)
		}
		if after := cr.n - int64(br.Buffered()); after == before {
			t.Fatalf("no progress on %q", in)
		}
	}
}

func (e *SyntaxError) msg() string {
	if e == nil {
		return "cancelled"
	}
	return e.Msg
}

func TestCommandLoop(t *testing.T) {
	in := strings.Join([]string{
		"a1 NOOP",
		"a2 login {5}\r\nalice \"s3 \\\"cret\"",
		"a3 LOGIN {5000}",
		"a4 SELECT inbox",
		"a5 select &AOk-t&AOk-",
		"a6 SELECT &AGE-",
		"a7 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From)])",
		"a8 FETCH 1 BODY[0]",
		"a9 UID SEARCH RETURN (COUNT) CHARSET UTF-8 OR FROM {3+}\r\nbob NOT (SEEN 1:4)",
		"b1 SEARCH CHARSET BIG5 SUBJECT {4+}\r\nab\r\n",
		"b2 STORE 1:2 +FLAGS.SILENT (\\seen)",
		"b3 APPEND Drafts (\\Draft) \" 2-Jan-2024 10:00:00 +0100\" {11}\r\nhello world",
		"b4 APPEND Drafts {12+}\r\nhello\r\nworld extra",
		"b5 APPEND nosuch {3}",
		"b5 APPEND nosuch {3+}\r\nabc",
		"b5 LIST \"\" %",
		"b6 STATUS INBOX (MESSAGES UIDNEXT unseen)",
		"b7 AUTHENTICATE PLAIN\r\nAGEAYg==",
		"b8 AUTHENTICATE PLAIN\r\n*",
		"b9 AUTHENTICATE PLAIN AGEAYg==",
		"(bad",
		"c1 " + strings.Repeat("x", 300),
		"c2 NOOP",
	}, "\r\n") + "\r\n"
	got := serve(t, in, 200)
	want := []string{
		"a1 OK NOOP",
		"+",
		`a2 OK LOGIN "alice" "s3 \"cret"`,
		"a3 BAD literal of 5000 bytes exceeds the limit of 1024",
		`a4 OK SELECT "INBOX"`,
		`a5 OK SELECT "été"`,
		`a6 BAD mailbox name "&AGE-": imapwire: invalid modified UTF-7: printable character 'a' must not be encoded`,
		"a7 OK UID FETCH 1 ranges 2 items",
		"a8 BAD section part number must not be 0",
		"a9 OK UID SEARCH ((OR (FROM \"bob\") (NOT ((SEEN) (SEQSET 1:4)))))",
		`b1 BAD unsupported charset "BIG5"`,
		"b2 OK STORE 1 [\\Seen]",
		"+",
		`b3 OK APPEND "Drafts" 11 bytes`,
		`b4 BAD expected end of line, found SP`,
		`b5 BAD no such mailbox`,
		`b5 BAD no such mailbox`,
		`b5 OK LIST "" "%"`,
		`b6 OK STATUS "INBOX" [MESSAGES UIDNEXT UNSEEN]`,
		`b7 OK AUTHENTICATE PLAIN "\x00a\x00b"`,
		`b8 BAD cancelled`,
		`b9 OK AUTHENTICATE PLAIN`,
		`* BAD expected command tag, found "("`,
		"c1 BAD command line too long (more than 200 bytes)",
		"c2 OK NOOP",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("transcript:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func FuzzDecoder(f *testing.F) {
	for _, s := range []string{
		"a NOOP\r\n",
		"a LOGIN {3}\r\nabc {2+}\r\nxy\r\n",
		"a SEARCH CHARSET UTF-8 OR (FROM x NOT 1:*) UID $ HEADER a {1}\r\nb\r\n",
		"a UID FETCH 1:*,3 (BODY.PEEK[1.2.HEADER.FIELDS.NOT (a \"b\")]<0.10> BINARY.SIZE[1] MODSEQ)\r\n",
		"a STORE 1 (UNCHANGEDSINCE 5) -FLAGS \\Seen x\r\n",
		"a APPEND INBOX (\\Seen) \"01-Jan-2000 00:00:00 +0000\" ~{3+}\r\na\x00b\r\n",
		"a LOGIN ( {5+}\r\nabcde\r\nb NOOP\r\n",
		"a AUTHENTICATE PLAIN\r\nAGEAYg==\r\n",
		"a STATUS x (MESSAGES SIZE)\r\n",
		"a LIST \"\" *\r\n",
		"a SELECT &2D3eAA-\r\n",
		"a APPEND nosuch {3}\r\nb APPEND nosuch {3+}\r\nabc\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		serve(t, in, 512)
	})
}
