package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bucketmail/bucketmail/internal/config"
	"github.com/bucketmail/bucketmail/internal/delivery"
	"github.com/bucketmail/bucketmail/internal/imapserver"
	"github.com/bucketmail/bucketmail/internal/lmtp"
	"github.com/bucketmail/bucketmail/internal/userdb"
)

// Shutdown deadlines: LMTP deliveries in progress get lmtpGrace to finish
// (then answer 421); IMAP commands in progress get imapGrace.
const (
	lmtpGrace = 30 * time.Second
	imapGrace = 10 * time.Second
)

// procsPerCPU is how many Go schedulers (GOMAXPROCS) serve runs per CPU
// the runtime found. File-system calls (fsync, creating the object
// file, SQLite's writes) block the OS thread and, for as long as they
// last, the scheduler running it; with one scheduler per CPU a few slow
// ones stall every session's goroutines behind them. Measured with `go
// run ./bench` on 2 CPUs: mixed IMAP load p99 of cheap commands (NOOP,
// LOGOUT, IDLE) 9-16 ms at GOMAXPROCS=2, 4-8 ms at 8, and 20-30 % more
// operations/s (bench/RESULTS.md).
const procsPerCPU = 4

// serveProcs sets GOMAXPROCS for serve to procsPerCPU times the
// runtime's default (the CPUs, or a container's CPU limit, at start; the
// runtime no longer follows later changes of that limit), unless
// $GOMAXPROCS is set (the operator's choice wins), and returns the value
// in effect.
func serveProcs() int {
	n := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") != "" {
		return n
	}
	runtime.GOMAXPROCS(n * procsPerCPU)
	return n * procsPerCPU
}

func cmdServe(ctx context.Context, stopSignals func(), args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := config.RegisterFlags(fs, true)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: serve takes no arguments, got %q", errUsage, pos)
	}
	cfg, err := flags.Load()
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr).With("node", cfg.NodeName)
	procs := serveProcs()
	log.Info("starting", "version", version(), "config", cfg, "gomaxprocs", procs)

	var tlsConfig *tls.Config
	if cfg.TLSEnabled() {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	e, err := openEnvWith(ctx, cfg, log, envOptions{cache: true, usersMayBeDown: true, server: true})
	if err != nil {
		return err
	}
	defer e.Close()
	if err := prepareIndex(ctx, e, log); err != nil { // rebuild an empty index from the bucket; journal on
		return err
	}
	// Join the cluster: other servers' events wake this server's
	// sessions; while the bus is down the store is polled.
	if err := e.node.Start(ctx, e.store); err != nil {
		return err
	}
	log.Info("bus", "kind", cfg.BusKind(), "poll_interval", cfg.Cluster.PollInterval, "consistency_window", cfg.Cluster.ConsistencyWindow)
	ctl, err := listenControl(cfg.DataDir, e.node, log.With("component", "control"))
	if err != nil {
		return err
	}
	if ctl != nil {
		go ctl.serve(context.WithoutCancel(ctx))
		defer ctl.Close()
	}

	var auth users = e.users
	if e.auth != nil {
		auth = e.auth
		log.Info("auth cache on", "max_entries", cfg.Auth.CacheMaxEntries)
	}
	imapSrv := imapserver.New(imapserver.Options{
		Store:             e.store,
		Auth:              auth,
		TLS:               tlsConfig,
		AllowInsecureAuth: cfg.Auth.AllowInsecure,
		MaxAppendSize:     cfg.LMTP.MaxMessageSize,
		Logger:            log.With("proto", "imap"),
		Trace:             cfg.Log.Trace,
		AddressPolicy:     e.policy,
		ThrottleMaxDelay:  cfg.Auth.ThrottleMaxDelay,
	})
	lmtpSrv := lmtp.New(lmtp.Options{
		Deliverer: &delivery.Deliverer{
			Store:     e.store,
			Users:     auth,
			Delimiter: cfg.LMTP.Delimiter(),
			MaxSize:   cfg.LMTP.MaxMessageSize,
			Hostname:  cfg.Hostname,
			Policy:    e.policy,
			Logger:    log.With("proto", "lmtp"),
		},
		Hostname:       cfg.Hostname,
		MaxMessageSize: cfg.LMTP.MaxMessageSize,
		MaxLineLength:  cfg.LMTP.MaxLineLength,
		MaxConnections: cfg.LMTP.MaxConnections,
		TLS:            tlsConfig,
		Logger:         log.With("proto", "lmtp"),
	})

	// Open every listener before serving any, so a bad address fails
	// the start instead of leaving half a server.
	type listener struct {
		proto string
		ln    net.Listener
		serve func(net.Listener) error
	}
	var lns []listener
	closeAll := func() {
		for _, l := range lns {
			l.ln.Close()
		}
	}
	imapLn, err := net.Listen("tcp", cfg.IMAP.Listen)
	if err != nil {
		return fmt.Errorf("imap: listen: %w", err)
	}
	lns = append(lns, listener{"imap", imapLn, func(ln net.Listener) error { return imapSrv.Serve(ln, false) }})
	if cfg.IMAP.TLSListen != "" {
		ln, err := net.Listen("tcp", cfg.IMAP.TLSListen)
		if err != nil {
			closeAll()
			return fmt.Errorf("imaps: listen: %w", err)
		}
		lns = append(lns, listener{"imaps", ln, func(ln net.Listener) error { return imapSrv.Serve(ln, true) }})
	}
	lmtpLn, err := lmtp.Listen(cfg.LMTP.Listen)
	if err != nil {
		closeAll()
		return err
	}
	lns = append(lns, listener{"lmtp", lmtpLn, lmtpSrv.Serve})
	metricsCtx, stopMetrics := context.WithCancel(context.WithoutCancel(ctx))
	defer stopMetrics()
	if e.s3 != nil && e.metrics != nil {
		e.metrics.MustRegister(s3Collector{e.s3})
	}
	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			closeAll()
			return fmt.Errorf("metrics: listen: %w", err)
		}
		lns = append(lns, listener{"metrics", ln, func(ln net.Listener) error { return e.metrics.Serve(metricsCtx, ln, log) }})
	}

	serveErr := make(chan error, len(lns))
	var wg sync.WaitGroup
	for _, l := range lns {
		if l.proto == "metrics" {
			log.Info("listening", "proto", l.proto, "addr", l.ln.Addr().String())
		} else {
			log.Info("listening", "proto", l.proto, "addr", l.ln.Addr().String(), "starttls", tlsConfig != nil && l.proto != "imaps")
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.serve(l.ln); err != nil {
				serveErr <- fmt.Errorf("%s: serve %s: %w", l.proto, l.ln.Addr(), err)
			}
		}()
	}
	if noUsersYet(ctx, e) {
		log.Info("no users yet; add one with: " + userAddHint(fs))
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down (signal); a second signal stops at once")
	case runErr = <-serveErr:
		log.Error("shutting down", "err", runErr)
	}
	stopSignals()

	// LMTP first, so deliveries in progress finish; IMAP at the same time.
	var sdWG sync.WaitGroup
	sdWG.Add(2)
	go func() {
		defer sdWG.Done()
		c, cancel := context.WithTimeout(context.Background(), lmtpGrace)
		defer cancel()
		if err := lmtpSrv.Shutdown(c); err != nil {
			log.Warn("lmtp: shutdown deadline passed; deliveries in progress were told 421", "err", err)
		}
	}()
	go func() {
		defer sdWG.Done()
		c, cancel := context.WithTimeout(context.Background(), imapGrace)
		defer cancel()
		if err := imapSrv.Shutdown(c); err != nil {
			log.Warn("imap: shutdown deadline passed", "err", err)
		}
	}()
	sdWG.Wait()
	stopMetrics()
	closeAll()
	wg.Wait()
	if e.s3 != nil {
		log.Info("s3 requests", s3StatsAttrs(e.s3.Stats())...)
	}
	log.Info("stopped")
	if runErr != nil && !errors.Is(runErr, net.ErrClosed) {
		return runErr
	}
	return nil
}

// serverOnlyFlags are serve's flags that the CLI commands do not take.
var serverOnlyFlags = map[string]bool{"imap-listen": true, "imaps-listen": true, "lmtp-listen": true, "metrics-listen": true}

// userAddHint is the command that adds a user to the server fs
// configured: "bucketmail user add you@example.org" with --config FILE
// first when one was given, then every other flag serve was given that
// the CLI takes too (--data-dir, --userdb, the S3 flags…), shell-quoted;
// a password in a database or bus URL shows as xxxxx.
// Without --password-stdin: in a terminal, user add prompts for the
// password twice without echo (--password-stdin would read it visibly).
func userAddHint(fs *flag.FlagSet) string {
	hint := "bucketmail user add you@example.org"
	if f := fs.Lookup("config"); f != nil && f.Value.String() != "" {
		hint += " --config " + shellQuote(f.Value.String())
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" || serverOnlyFlags[f.Name] {
			return
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			if f.Value.String() == "true" {
				hint += " --" + f.Name
			}
			return
		}
		v := f.Value.String()
		if f.Name == "metadb" || f.Name == "bus" || f.Name == "userdb" {
			v = config.UserDB{URL: v}.Redacted() // passwords never logged
		}
		hint += " --" + f.Name + " " + shellQuote(v)
	})
	return hint
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// s3StatsAttrs turns the S3 store's counters into log attributes, in key
// order, leaving out zeros ("PutObject.requests" = 12, ...).
func s3StatsAttrs(st map[string]uint64) []any {
	keys := make([]string, 0, len(st))
	for k, v := range st {
		if v != 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	attrs := make([]any, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, slog.Uint64(k, st[k]))
	}
	return attrs
}

// noUsersYet reports whether the embedded user database is empty (for a
// hint at start; other backends are managed elsewhere).
func noUsersYet(ctx context.Context, e *env) bool {
	m, ok := e.users.(userdb.Manager)
	if !ok || e.cfg.UserDB.Kind() != config.UserDBSQLite {
		return false
	}
	list, err := m.ListUsers(ctx)
	return err == nil && len(list) == 0
}
