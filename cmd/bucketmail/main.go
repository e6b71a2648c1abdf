// Command bucketmail is an IMAP server whose mail lives in a blob store,
// with a SQLite index. Mail arrives over LMTP; clients read it over IMAP.
//
// Usage:
//
//	bucketmail serve [--config FILE] [--data-dir DIR] [--imap-listen HOST:PORT]
//	                 [--imaps-listen HOST:PORT] [--lmtp-listen HOST:PORT|PATH]
//	                 [--metrics-listen HOST:PORT]
//	bucketmail user add ADDRESS [--password-stdin]
//	bucketmail user passwd ADDRESS [--password-stdin]
//	bucketmail user del ADDRESS
//	bucketmail user list
//	bucketmail import --user ADDRESS [--mailbox NAME] PATH...
//	bucketmail reindex (--user ADDRESS | --all) [--dry-run] [--force]
//	bucketmail fsck [--repair] [--grace DURATION] [--workers N]
//	bucketmail cache stats|purge [--cache-dir DIR]
//	bucketmail pw [-s SCHEME] [-p PASSWORD | stdin] [-t HASH] [-l]
//	bucketmail version
//
// --userdb URL (or userdb in the config file) selects the user database:
// sqlite (default: the embedded one, in index.db), passwd-file:/path
// (Dovecot's format, read-only), postgres://…, mysql://… (a default schema
// bucketmail manages, or an existing table through [userdb]
// password_query/user_query, read-only), redis://…, dynamodb://TABLE. See
// internal/userdb/{passwdfile,sqldb,redis,dynamodb}. The user subcommands
// work on every writable backend and fail with "backend is read-only"
// otherwise. pw prints a Dovecot "{SCHEME}hash" like doveadm pw.
//
// Every subcommand takes --config, --data-dir, --userdb and the S3 flags
// --s3-endpoint URL, --s3-bucket NAME, --s3-region NAME, --s3-prefix P and
// --s3-path-style; flags override the file. With a bucket set (flag or
// [s3] bucket), message bodies live in the bucket and serve keeps a read
// cache in front of it ([cache]: data_dir/cache, 1 GiB, LRU); without one
// they live under data_dir/blobs. S3 credentials come from
// $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY or [s3] credentials_file and
// are never logged.
// With no config, serve keeps its data under ./bucketmail-data, serves
// IMAP on 127.0.0.1:1143 and LMTP on 127.0.0.1:2424 (an --lmtp-listen
// value with a "/" is a unix socket). The settings and defaults are
// documented in package internal/config and docs/operations.md.
//
// Layout of the data directory:
//
//	index.db (+ -wal, -shm)   SQLite: mailboxes, messages, users
//	blobs/                    message bodies (blob/fs), one object per message; not with S3
//	cache/                    read cache of bucket objects (S3 mode; may be deleted while stopped)
//	spool/                    messages being received (removed after storing)
//	control.sock              serve's control socket (0600) for CLI hints (cluster.go)
//
// Delivery (LMTP) adds Return-Path, Delivered-To (single-recipient
// transactions, as Dovecot does) and Received header fields in front of
// the message. Lines that end in a bare LF (no CR) are stored with CRLF,
// both for LMTP delivery and for import, so what IMAP serves has RFC 5322
// line ends and RFC822.SIZE counts the CRs. IMAP APPEND stores the bytes
// exactly as the client sent them.
//
// user add and user passwd read the password from the first line of
// standard input with --password-stdin, or prompt for it (twice, without
// echo) when standard input is a terminal. Passwords never appear on the
// command line or in logs. user del also deletes the account's mail.
//
// import reads mbox files (INTERNALDATE from each "From " line) and
// Maildir folders (INTERNALDATE from the file time, flags from the file
// name; Maildir++ subfolders become mailboxes) into an existing account.
//
// reindex rebuilds accounts' index rows from the bucket (reindex.go). It
// refuses while a serve answers on DATA_DIR/control.sock, and with
// --metadb postgres://… unless --force says every server is stopped.
//
// fsck compares the index with the blob store (see fsck.go): objects no
// index row refers to (older than --grace; --repair deletes them) and
// index entries whose object is missing (reported). Exit status 1 when
// problems remain.
//
// Cluster (docs/operations.md, "Cluster"): --metadb postgres://… shares
// the index between servers, --bus local|nats://…|postgres://… carries
// change hints between them (cluster.go, package internal/cluster),
// --node-name names this server in events and logs, and serve's
// --metrics-listen HOST:PORT serves Prometheus /metrics. user add/passwd/del
// announce "updating" and "updated" on the bus so every server's auth
// cache honours the change at once; with the local bus they reach a serve
// on the same data directory through DATA_DIR/control.sock.
//
// serve stops cleanly on SIGTERM or SIGINT: listeners close, LMTP
// deliveries in progress finish (or answer 421 after 30 s), IMAP sessions
// get BYE. A second signal exits at once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

// exit codes
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, stop, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage:
  bucketmail serve [--config FILE] [--data-dir DIR] [--imap-listen HOST:PORT]
                   [--imaps-listen HOST:PORT] [--lmtp-listen HOST:PORT|PATH]
                   [--metrics-listen HOST:PORT]
  bucketmail user add ADDRESS [--password-stdin]
  bucketmail user passwd ADDRESS [--password-stdin]
  bucketmail user del ADDRESS
  bucketmail user list
  bucketmail import --user ADDRESS [--mailbox NAME] PATH...
  bucketmail reindex (--user ADDRESS | --all) [--dry-run] [--force]
  bucketmail fsck [--repair] [--grace DURATION] [--workers N]
  bucketmail cache stats|purge [--cache-dir DIR]
  bucketmail pw [-s SCHEME] [-p PASSWORD | stdin] [-t HASH] [-l]
  bucketmail version
  bucketmail help
Every subcommand also takes --config FILE, --data-dir DIR, --userdb URL,
--metadb sqlite|postgres://..., --bus local|nats://...|postgres://...,
--node-name NAME and
--s3-endpoint URL --s3-bucket NAME --s3-region NAME --s3-prefix P --s3-path-style.
--userdb: sqlite (default), passwd-file:/path, postgres://..., mysql://...,
redis://..., dynamodb://TABLE. "bucketmail COMMAND --help" lists a command's flags.
`

// synopsis returns the usage lines of the subcommand a FlagSet is named
// after ("serve", "user add", "cache stats"), or "bucketmail NAME".
func synopsis(name string) string {
	var out []string
	for _, word := range []string{name, strings.Fields(name + " x")[0]} {
		in := false
		for _, l := range strings.Split(usage, "\n") {
			t := strings.TrimSpace(l)
			switch {
			case strings.HasPrefix(t, "bucketmail "+word+" ") || t == "bucketmail "+word:
				out, in = append(out, t), true
			case in && strings.HasPrefix(t, "["):
				out = append(out, "    "+t)
			default:
				in = false
			}
		}
		if len(out) > 0 {
			break
		}
	}
	if len(out) == 0 {
		return "bucketmail " + name
	}
	return strings.Join(out, "\n")
}

// errUsage marks errors that are the user's command line; run prints the
// usage line for them and exits 2.
var errUsage = errors.New("usage")

// run is main without the process: it returns the exit code. stopSignals
// restores default signal handling (so a second signal kills serve).
func run(ctx context.Context, stopSignals func(), args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = cmdServe(ctx, stopSignals, rest, stderr)
	case "user":
		err = cmdUser(ctx, rest, stdin, stdout, stderr)
	case "import":
		err = cmdImport(ctx, rest, stdout, stderr)
	case "reindex":
		err = cmdReindex(ctx, rest, stdout, stderr)
	case "fsck":
		err = cmdFsck(ctx, rest, stdout, stderr)
	case "cache":
		err = cmdCache(ctx, rest, stdout, stderr)
	case "pw":
		err = cmdPw(ctx, rest, stdin, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "bucketmail", version())
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "bucketmail: %v\n%s", err, usage)
		return exitUsage
	}
	fmt.Fprintf(stderr, "bucketmail: %v\n", err)
	return exitError
}

// version returns the module version or the VCS revision of the build.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	if (v == "" || v == "(devel)") && rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		return "devel-" + rev + modified
	}
	if v == "" {
		v = "(devel)"
	}
	return v + " " + bi.GoVersion
}

// parseFlags parses args with fs, allowing flags after positional
// arguments ("user add ADDRESS --password-stdin"): it returns the
// positional arguments. A "--" ends flag parsing.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	// The flag package prints errors and the flag list itself; run
	// prints an error with the usage once, and --help goes to out.
	out := fs.Output()
	fs.SetOutput(io.Discard)
	defer fs.SetOutput(out)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(out, "usage:\n  %s\nflags:\n", strings.ReplaceAll(synopsis(fs.Name()), "\n", "\n  "))
				fs.SetOutput(out)
				fs.PrintDefaults()
				return nil, err
			}
			return nil, fmt.Errorf("%w: %s: %v", errUsage, fs.Name(), err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// fs.Parse stops at the first non-flag or after "--".
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
