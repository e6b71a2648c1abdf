package imapserver

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Scenario scripts (testdata/scenarios/*.txt) drive a real server over
// loopback. Each script gets a fresh server and store. Line format:
//
//	# comment (also blank lines)
//	C: text          client line for session 1, sent with CRLF
//	S: text          next server line of session 1 must equal text
//	C2: / S2:        the same for session 2 (any digit 1-9)
//	C: text\         a trailing backslash sends the text without CRLF
//	C: ... {@}       a literal whose content is the L: lines that follow
//	L: text          (each sent with CRLF, or without after a trailing
//	                 backslash); {@} is a synchronizing literal (the "+"
//	                 is awaited), {@+} a LITERAL+ one. The command goes
//	                 on with the next C: line (often "C:" alone).
//
// In S lines, {{re}} is a Go regular expression matching part of the
// line; everything outside {{ }} matches literally. A session connects
// on first use and its greeting is checked against "* OK [CAPABILITY
// IMAP4rev1 ...". "S: *EOF*" expects the server to close the connection.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenarios")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			t.Parallel()
			runScenario(t, f)
		})
	}
}

type scenarioSession struct {
	nc  net.Conn
	br  *bufio.Reader
	log []string
}

// compileExpect turns an S line into an anchored regexp.
func compileExpect(s string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			b.WriteString(regexp.QuoteMeta(s))
			break
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("unclosed {{ in %q", s)
		}
		b.WriteString(regexp.QuoteMeta(s[:i]))
		b.WriteString("(?:" + s[i+2:i+j] + ")")
		s = s[i+j+2:]
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

var (
	scenarioLine  = regexp.MustCompile(`^([CSL])([1-9]?): ?(.*)$`)
	literalMarker = regexp.MustCompile(`\{@(\+?)\}$`)
)

func runScenario(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	env := newTestEnv(t, nil)
	sessions := map[string]*scenarioSession{}
	defer func() {
		for _, s := range sessions {
			s.nc.Close()
		}
	}()
	get := func(id string, lineNo int) *scenarioSession {
		if s := sessions[id]; s != nil {
			return s
		}
		nc, err := net.Dial("tcp", env.addr)
		if err != nil {
			t.Fatalf("%s:%d: dial: %v", file, lineNo, err)
		}
		s := &scenarioSession{nc: nc, br: bufio.NewReader(nc)}
		sessions[id] = s
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		g, err := s.br.ReadString('\n')
		if err != nil || !strings.HasPrefix(g, "* OK [CAPABILITY IMAP4rev1 ") {
			t.Fatalf("%s:%d: greeting %q, %v", file, lineNo, g, err)
		}
		return s
	}
	lines := strings.Split(string(data), "\n")
	for n := 0; n < len(lines); n++ {
		lineNo := n + 1
		line := strings.TrimRight(lines[n], "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := scenarioLine.FindStringSubmatch(line)
		if m == nil || m[1] == "L" {
			t.Fatalf("%s:%d: bad script line %q", file, lineNo, line)
		}
		id := m[2]
		if id == "" {
			id = "1"
		}
		s := get(id, lineNo)
		text := m[3]
		switch m[1] {
		case "C":
			out := text + "\r\n"
			if strings.HasSuffix(text, `\`) {
				out = strings.TrimSuffix(text, `\`)
			}
			var lit []byte
			sync := false
			if lm := literalMarker.FindStringSubmatch(text); lm != nil {
				// The L: lines that follow are the literal's content.
				for n+1 < len(lines) && strings.HasPrefix(lines[n+1], "L"+m[2]+":") {
					n++
					l := strings.TrimPrefix(strings.TrimRight(lines[n], "\r"), "L"+m[2]+":")
					l = strings.TrimPrefix(l, " ")
					if strings.HasSuffix(l, `\`) {
						lit = append(lit, strings.TrimSuffix(l, `\`)...)
					} else {
						lit = append(lit, l+"\r\n"...)
					}
				}
				sync = lm[1] == ""
				out = literalMarker.ReplaceAllString(text, fmt.Sprintf("{%d%s}", len(lit), lm[1])) + "\r\n"
			}
			s.log = append(s.log, "C: "+strings.TrimRight(out, "\r\n"))
			if _, err := s.nc.Write([]byte(out)); err != nil {
				t.Fatalf("%s:%d: write: %v", file, lineNo, err)
			}
			if lit != nil {
				if sync {
					s.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
					got, err := s.br.ReadString('\n')
					s.log = append(s.log, "S: "+strings.TrimRight(got, "\r\n"))
					if err != nil || !strings.HasPrefix(got, "+") {
						t.Fatalf("%s:%d: want continuation, got %q %v\n%s", file, lineNo, got, err, strings.Join(s.log, "\n"))
					}
				}
				s.log = append(s.log, fmt.Sprintf("C: <%d literal bytes>", len(lit)))
				if _, err := s.nc.Write(lit); err != nil {
					t.Fatalf("%s:%d: write: %v", file, lineNo, err)
				}
			}
		case "S":
			s.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := s.br.ReadString('\n')
			if text == "*EOF*" {
				if err == nil {
					t.Fatalf("%s:%d: want EOF, got %q\n%s", file, lineNo, got, strings.Join(s.log, "\n"))
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s:%d: want %q, read error %v (partial %q)\nsession %s so far:\n%s", file, lineNo, text, err, got, id, strings.Join(s.log, "\n"))
			}
			got = strings.TrimSuffix(strings.TrimSuffix(got, "\n"), "\r")
			s.log = append(s.log, "S: "+got)
			re, err := compileExpect(text)
			if err != nil {
				t.Fatalf("%s:%d: %v", file, lineNo, err)
			}
			if !re.MatchString(got) {
				t.Fatalf("%s:%d: session %s\n got: %q\nwant: %q\nsession so far:\n%s", file, lineNo, id, got, text, strings.Join(s.log, "\n"))
			}
		}
	}
}
