package importer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
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
// first: ordered by the delivery time that starts a Maildir file name,
// then by name. fn gets the file's path, its IMAP flags and its
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
	type file struct {
		path  string
		name  string
		stamp int64
	}
	var files []file
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
			stamp, err := strconv.ParseInt(strings.SplitN(name, ".", 2)[0], 10, 64)
			if err != nil {
				stamp = 1<<63 - 1 // unknown: after the dated ones
			}
			files = append(files, file{path: filepath.Join(dir, sub, name), name: name, stamp: stamp})
		}
	}
	sort.Slice(files, func(i, j int) bool {
		if files[i].stamp != files[j].stamp {
			return files[i].stamp < files[j].stamp
		}
		return files[i].name < files[j].name
	})
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
		if f, ok := maildirFlags[c]; ok {
			out = append(out, f)
		} else if c >= 'a' && c <= 'z' {
			if kw, ok := keywords[int(c-'a')]; ok {
				out = append(out, kw)
			}
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
