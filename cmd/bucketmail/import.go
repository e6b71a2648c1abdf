package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/bucketmail/bucketmail/internal/config"
	"github.com/bucketmail/bucketmail/internal/importer"
	"github.com/bucketmail/bucketmail/internal/mailstore"
	"github.com/bucketmail/bucketmail/internal/userdb"
)

func cmdImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := config.RegisterFlags(fs, false)
	user := fs.String("user", "", "`address` of the account to import into (required)")
	mailbox := fs.String("mailbox", "INBOX", "mailbox `name` to import into (created if missing)")
	paths, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *user == "" || len(paths) == 0 {
		return fmt.Errorf("%w: import needs --user ADDRESS and at least one PATH", errUsage)
	}
	cfg, err := flags.Load()
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	e, err := openEnv(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer e.Close()

	u, err := e.users.Lookup(ctx, e.policy.Normalize(*user))
	if err != nil {
		if errors.Is(err, userdb.ErrNotFound) {
			return fmt.Errorf("no user %s (add it first with: bucketmail user add %s)", *user, *user)
		}
		return err
	}
	acct, err := e.store.Account(ctx, u.Account)
	if err != nil {
		return err
	}
	im := &importRun{ms: e.store, acct: acct, maxSize: cfg.LMTP.MaxMessageSize, log: log, out: stdout}
	for i, p := range paths {
		before := im.total
		st, err := os.Stat(p)
		if err == nil {
			if st.IsDir() {
				err = im.maildirTree(ctx, p, *mailbox)
			} else {
				err = im.mbox(ctx, p, *mailbox)
			}
		}
		if err != nil {
			// What is imported stays; say what to run again so that
			// nothing is imported twice.
			return fmt.Errorf("import stopped at %s: %w; %d messages were imported into %s (%d of them from %s); "+
				"paths done: %q; not started: %q", p, err, im.total, u.Address, im.total-before, p, paths[:i], paths[i+1:])
		}
	}
	fmt.Fprintf(stdout, "imported %d messages into %s (%d skipped)\n", im.total, u.Address, im.skipped)
	return nil
}

// importRun imports into one account.
type importRun struct {
	ms      *mailstore.Store
	acct    *mailstore.Account
	maxSize int64
	log     *slog.Logger
	out     io.Writer
	total   int
	skipped int
	known   map[string]bool // mailboxes known to exist
}

// ensureMailbox creates the mailbox if it does not exist.
func (im *importRun) ensureMailbox(ctx context.Context, name string) error {
	if im.known[name] {
		return nil
	}
	_, err := im.acct.Mailbox(ctx, name)
	if errors.Is(err, mailstore.ErrNoMailbox) {
		_, err = im.acct.CreateMailbox(ctx, name, "")
		if errors.Is(err, mailstore.ErrMailboxExists) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("mailbox %q: %w", name, err)
	}
	if im.known == nil {
		im.known = make(map[string]bool)
	}
	im.known[name] = true
	return nil
}

// store spools r (bare LF → CRLF) and appends it. A message over the size
// limit is skipped with a warning; other errors stop the import.
func (im *importRun) store(ctx context.Context, mailbox, origin string, r io.Reader, flags []string, date time.Time) error {
	in, err := im.ms.Spool(ctx, r, true, im.maxSize)
	if errors.Is(err, mailstore.ErrTooLarge) {
		im.skipped++
		im.log.Warn("import: message skipped: over lmtp.max_message_size", "from", origin, "limit", im.maxSize)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", origin, err)
	}
	defer in.Close()
	if _, err := im.acct.Append(ctx, mailbox, in, flags, date); err != nil {
		return fmt.Errorf("%s: %w", origin, err)
	}
	im.total++
	return nil
}

// mbox imports one mbox file.
func (im *importRun) mbox(ctx context.Context, path, mailbox string) error {
	if err := im.ensureMailbox(ctx, mailbox); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	before := im.total
	n := 0
	err = importer.Mbox(ctx, f, func(msg io.Reader, date time.Time) error {
		n++
		return im.store(ctx, mailbox, fmt.Sprintf("%s#%d", path, n), msg, nil, date)
	})
	if err != nil {
		return fmt.Errorf("import %s: %w", path, err)
	}
	fmt.Fprintf(im.out, "%s: %d messages into %s\n", path, im.total-before, mailbox)
	return nil
}

// maildirTree imports a Maildir and its Maildir++ subfolders: the root
// goes into mailbox, a subfolder ".A.B" into "A/B" (under mailbox when
// mailbox is not INBOX); see importer.Subfolders.
func (im *importRun) maildirTree(ctx context.Context, dir, mailbox string) error {
	subs, err := importer.Subfolders(dir)
	if err != nil {
		return err
	}
	// A directory holding only subfolders (no cur/ or new/) is fine.
	if importer.IsMaildir(dir) || len(subs) == 0 {
		if err := im.maildir(ctx, dir, mailbox); err != nil {
			return err
		}
	}
	for _, sub := range subs {
		name := sub.Name
		if !strings.EqualFold(mailbox, "INBOX") {
			name = mailbox + "/" + name
		}
		if err := im.maildir(ctx, sub.Path, name); err != nil {
			return err
		}
	}
	return nil
}

// maildir imports the messages of one Maildir folder (cur and new).
func (im *importRun) maildir(ctx context.Context, dir, mailbox string) error {
	if err := im.ensureMailbox(ctx, mailbox); err != nil {
		return err
	}
	before := im.total
	err := importer.Maildir(ctx, dir, func(path string, flags []string, date time.Time) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return im.store(ctx, mailbox, path, f, flags, date)
	})
	if err != nil {
		return fmt.Errorf("import %s: %w", dir, err)
	}
	fmt.Fprintf(im.out, "%s: %d messages into %s\n", dir, im.total-before, mailbox)
	return nil
}
