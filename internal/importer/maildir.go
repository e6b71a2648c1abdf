package importer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bucketmail/bucketmail/internal/imapwire"
)

// ErrNotMaildir: the directory has neither cur/ nor new/.
var ErrNotMaildir = errors.New("importer: not a Maildir (no cur/ or new/)")

// Maildir flag letters (https://cr.yp.to/proto/maildir.html, "info"
// ":2,<letters>") and the IMAP flags Dovecot maps them to. "P" (passed,
// i.e. resent/forwarded) has no system flag; Dovecot shows it as the
// $Forwarded keyword.
var maildirFlags = map[byte]string{
	'D': `\Draft`,
	'F': `\Flagged`,
	'P': "$Forwarded",
	'R': `\Answered`,
	'S': `\Seen`,
	'T': `\Deleted`,
}

// IsMaildir reports whether dir has a cur/ or new/ subdirectory.
func IsMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if st, err := os.Stat(filepath.Join(dir, sub)); err == nil && st.IsDir() {
			return true
		}
	}
	return false
}

// Maildir calls fn for every message file of the Maildir folder dir (its
// new/ and cur/ subdirectories; tmp/ and subfolders are not read), oldest
// first: in UID order when Dovecot's dovecot-uidlist lists the file, then
// by the delivery time that starts a Maildir name ("<seconds>.M<usec>..."
// compared as numbers), then by name. fn gets the file's path, its IMAP flags and its
// INTERNALDATE (the file's modification time, as Dovecot uses).
//
// Flags come from the info suffix ":2,<letters>" of the name: D \Draft,
// F \Flagged, P $Forwarded, R \Answered, S \Seen, T \Deleted; lower-case
// letters are Dovecot keywords, a = keyword 0 of the folder's
// dovecot-keywords file, b = 1, ... (ignored when the file or the entry is
// missing). Files in new/ have no info and so no flags. Flags are in
// letter order, without duplicates. Names starting with "." are skipped.
//
// An error from fn stops the walk and is returned (wrapped with the path).
// ErrNotMaildir if dir has neither cur/ nor new/.
func Maildir(ctx context.Context, dir string, fn func(path string, flags []string, internalDate time.Time) error) error {
	if !IsMaildir(dir) {
		return fmt.Errorf("%w: %s", ErrNotMaildir, dir)
	}
	keywords := readKeywords(filepath.Join(dir, "dovecot-keywords"))
	uids := readUIDList(filepath.Join(dir, "dovecot-uidlist"))
	var files []maildirFile
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, iofs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("importer: maildir %s: %w", dir, err)
		}
		for _, e := range ents {
			name := e.Name()
			if strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
				continue
			}
			files = append(files, newMaildirFile(filepath.Join(dir, sub, name), name, uids))
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].less(files[j]) })
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("importer: maildir %s: %w", dir, err)
		}
		st, err := os.Stat(f.path)
		if errors.Is(err, iofs.ErrNotExist) {
			continue // moved or deleted by a running MUA meanwhile
		}
		if err != nil {
			return fmt.Errorf("importer: maildir %s: %w", f.path, err)
		}
		if err := fn(f.path, ParseMaildirFlags(f.name, keywords), st.ModTime()); err != nil {
			return fmt.Errorf("importer: maildir %s: %w", f.path, err)
		}
	}
	return nil
}

// maildirFile is one message file and its sort key.
type maildirFile struct {
	path, name string
	uid        uint64 // from dovecot-uidlist; 0 if not listed
	secs, usec uint64 // from the name; max if absent
}

func newMaildirFile(path, name string, uids map[string]uint64) maildirFile {
	f := maildirFile{path: path, name: name, secs: 1<<64 - 1, usec: 1<<64 - 1}
	base, _, _ := strings.Cut(name, ":")
	f.uid = uids[base]
	secs, rest, _ := strings.Cut(name, ".")
	if n, err := strconv.ParseUint(secs, 10, 64); err == nil {
		f.secs = n
		// Dovecot and Courier: "M<usec>P<pid>"; the usec is not padded.
		if r, ok := strings.CutPrefix(rest, "M"); ok {
			end := strings.IndexFunc(r, func(c rune) bool { return c < '0' || c > '9' })
			if end < 0 {
				end = len(r)
			}
			if n, err := strconv.ParseUint(r[:end], 10, 64); err == nil {
				f.usec = n
			}
		}
	}
	return f
}

func (f maildirFile) less(g maildirFile) bool {
	switch {
	case f.uid != 0 && g.uid != 0:
		return f.uid < g.uid
	case f.uid != 0 || g.uid != 0:
		return f.uid != 0 // listed files first
	case f.secs != g.secs:
		return f.secs < g.secs
	case f.usec != g.usec:
		return f.usec < g.usec
	}
	return f.name < g.name
}

// readUIDList reads Dovecot's dovecot-uidlist (version 3: a header line,
// then "<uid> [<extension fields>] :<file base name>") into base name →
// UID. Missing or unreadable: nil.
func readUIDList(path string) map[string]uint64 {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	uids := map[string]uint64{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			if !strings.HasPrefix(line, "3 ") {
				return nil // other versions: not understood, ignore the file
			}
			continue
		}
		uidStr, rest, ok := strings.Cut(line, " ")
		uid, err := strconv.ParseUint(uidStr, 10, 32)
		i := strings.Index(" "+rest, " :")
		if !ok || err != nil || uid == 0 || i < 0 {
			continue
		}
		name := (" " + rest)[i+2:]
		base, _, _ := strings.Cut(name, ":")
		uids[base] = uid
	}
	return uids
}

// ParseMaildirFlags returns the IMAP flags of a Maildir file name (see
// Maildir). keywords maps a lower-case letter's index (a=0) to a keyword
// name; nil means no keywords.
func ParseMaildirFlags(name string, keywords map[int]string) []string {
	i := strings.LastIndex(name, ":2,")
	if i < 0 {
		return nil
	}
	letters := []byte(name[i+3:])
	sort.Slice(letters, func(a, b int) bool { return letters[a] < letters[b] })
	var out []string
	var last byte
	for _, c := range letters {
		if c == last {
			continue
		}
		last = c
		f, ok := maildirFlags[c]
		if !ok && c >= 'a' && c <= 'z' {
			f, ok = keywords[int(c-'a')]
		}
		if ok && !slices.Contains(out, f) { // "P" and a $Forwarded keyword letter
			out = append(out, f)
		}
	}
	return out
}

// readKeywords reads a Dovecot dovecot-keywords file: lines "<index>
// <keyword>". Missing or unreadable: nil.
func readKeywords(path string) map[int]string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	kw := map[int]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		idx, name, ok := strings.Cut(sc.Text(), " ")
		n, err := strconv.Atoi(idx)
		if !ok || err != nil || n < 0 || n > 25 || !validKeyword(name) {
			continue
		}
		kw[n] = name
	}
	return kw
}

// validKeyword reports whether s is an IMAP flag-keyword atom (RFC 3501
// atom without "\").
func validKeyword(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// Folder is a Maildir++ subfolder.
type Folder struct {
	Name string // mailbox name, "/"-separated UTF-8: ".Sub.Folder" is "Sub/Folder"
	Path string // the subfolder's directory
}

// Subfolders returns the Maildir++ subfolders of the Maildir root dir,
// sorted by name: directories ".A.B" that are Maildirs themselves. The
// '.' hierarchy separator becomes '/', and each level is decoded from
// modified UTF-7 (RFC 3501 §5.1.3, how Dovecot and Courier name them); a
// level that does not decode is kept as it is. ".." and names with empty
// levels ("..x", ".a.") are skipped.
func Subfolders(dir string) ([]Folder, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("importer: maildir %s: %w", dir, err)
	}
	var out []Folder
	for _, e := range ents {
		n := e.Name()
		if len(n) < 2 || n[0] != '.' || n == ".." {
			continue
		}
		p := filepath.Join(dir, n)
		if st, err := os.Stat(p); err != nil || !st.IsDir() || !IsMaildir(p) {
			continue
		}
		levels := strings.Split(n[1:], ".")
		ok := true
		for i, l := range levels {
			if l == "" {
				ok = false
				break
			}
			if d, err := imapwire.DecodeMUTF7(l); err == nil {
				levels[i] = d
			}
		}
		if !ok {
			continue
		}
		out = append(out, Folder{Name: strings.Join(levels, "/"), Path: p})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
