// Command bench runs bucketmail and Dovecot on this machine with the same
// mail and the same load and prints a table of results and ratios
// (issue 4).
//
//	go run ./bench            # full run, about 11 minutes on 2 cores; writes bench/RESULTS.md
//	go run ./bench -smoke     # tiny sizes, a few seconds per server; prints the table only
//	go test ./bench           # TestSmoke: the smoke run, checking that every row is there
//
// Other flags: -profile DIR (pprof CPU profiles of bucketmail during the
// 8-sender LMTP and mixed loads, heap and goroutine profiles with the idle
// connections open, summarised in RESULTS.md), -only lmtp,mixed,...
// (quick before/after checks; give -results FILE to keep RESULTS.md),
// -servers, -rounds, -worktree (build bucketmail from the work tree with
// its uncommitted changes instead of a clean export of HEAD),
// -auth-scheme.
//
// Must run as root (Dovecot runs mail as the system user mail). Numbers
// from a machine that is busy with other work swing by a factor of two:
// each value is the best of several rounds, and the load average is
// recorded with the results.
//
// Servers (columns): Dovecot tuned for speed (the comparison that
// counts), Dovecot on its default service settings, bucketmail with the
// filesystem blob store, bucketmail with the S3 blob store against a local
// versitygw. Each runs with its own temp dirs on loopback ports in
// 127.0.0.1:22000-22999 and is stopped at the end; nothing else on the
// machine is touched, except that a missing Dovecot is installed with
// apt-get (dovecot-imapd, dovecot-lmtpd).
//
// Workloads (the load generator is this program: go-imap v2's client, an
// LMTP client on go-smtp, and raw IMAP for the idle connections):
//
//   - LMTP delivery of corpus messages with 1 and 8 concurrent senders:
//     messages/s and p99 latency per message (MAIL FROM to the final reply).
//   - A mixed IMAP load modelled on a desktop client, see mixed.go.
//   - Full download: UID FETCH 1:* BODY.PEEK[] of a large mailbox, MB/s.
//   - Memory per idle connection: N logged-in connections in IDLE, growth
//     of the server's memory (proportional set size summed over its
//     processes) divided by N.
//   - S3 requests (bucketmail-s3 only, counted by a reverse proxy in front
//     of versitygw, see s3.go): PUTs per delivered message, GETs per
//     FETCH BODY[] with an empty ("cache purge") and a warm read cache;
//     reindex of a 10,000-message account (seconds and requests).
//     Without versitygw ($(go env GOPATH)/bin/versitygw or $VERSITYGW)
//     the column is n/a; under CI=true it fails.
//
// Must run as root: Dovecot switches to the system user mail.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	var o Options
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	smoke := fs.Bool("smoke", false, "tiny sizes (a few seconds per server), for CI; does not write RESULTS.md unless -results is given")
	fs.StringVar(&o.Results, "results", "", "write the table with date, commit and machine notes to this file (default bench/RESULTS.md for a full run, none for -smoke)")
	fs.StringVar(&o.ProfileDir, "profile", "", "collect pprof CPU and heap profiles of bucketmail into this directory and summarise them in the results")
	fs.StringVar(&o.Servers, "servers", "dovecot,dovecot-default,bucketmail-fs,bucketmail-s3", "comma-separated servers to run")
	fs.StringVar(&o.AuthScheme, "auth-scheme", "SHA512-CRYPT", "password scheme stored for the benchmark users in both servers (SHA512-CRYPT, ARGON2ID, BLF-CRYPT, PLAIN)")
	fs.BoolVar(&o.Verbose, "v", false, "log progress at debug level")
	fs.IntVar(&o.Rounds, "rounds", 0, "rounds over all servers; each value is the best of the rounds (default 3, 1 with -smoke)")
	fs.BoolVar(&o.WorkTree, "worktree", false, "build bucketmail from the work tree as it is (default: from a clean export of the HEAD commit)")
	only := fs.String("only", "", "comma-separated workloads to run (lmtp, download, mixed, idle; default all), for quick before/after checks")
	fs.Parse(os.Args[1:])
	o.Sizes = FullSizes
	if *smoke {
		o.Sizes = SmokeSizes
	} else if o.Results == "" {
		o.Results = filepath.Join(repoRoot(), "bench", "RESULTS.md")
	}
	if *only != "" {
		o.Only = map[string]bool{}
		for _, w := range strings.Split(*only, ",") {
			o.Only[strings.TrimSpace(w)] = true
		}
	}
	if o.Rounds == 0 {
		o.Rounds = 3
		if *smoke {
			o.Rounds = 1
		}
	}
	level := slog.LevelInfo
	if o.Verbose {
		level = slog.LevelDebug
	}
	o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	o.Out = os.Stdout

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := Run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// Options configure Run.
type Options struct {
	Sizes      Sizes
	Servers    string // comma-separated target names
	Results    string // file to write (with markers), "" for none
	ProfileDir string // "" for no profiles
	AuthScheme string
	Rounds     int             // rounds over all servers (best value kept); 0 means 1
	WorkTree   bool            // build bucketmail from the work tree, not from HEAD
	Only       map[string]bool // workloads to run; nil for all
	Verbose    bool
	Log        *slog.Logger
	Out        io.Writer // the table is printed here
}
