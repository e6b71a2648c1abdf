package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bucketmail/bucketmail/internal/userdb/password"
)

// Run runs every selected server through every workload and prints the
// table to o.Out (and writes o.Results when set).
func Run(ctx context.Context, o Options) (*Report, error) {
	started := time.Now().UTC()
	load0 := loadAvg()
	if err := raiseFileLimit(uint64(o.Sizes.IdleConns)*4 + 4096); err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, s := range strings.Split(o.Servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			want[s] = true
		}
	}
	var cols []server
	for _, s := range servers {
		if want[s.Name] {
			cols = append(cols, s)
			delete(want, s.Name)
		}
	}
	for s := range want {
		return nil, fmt.Errorf("unknown server %q (have dovecot, dovecot-default, bucketmail-fs, bucketmail-s3)", s)
	}

	env := &runEnv{Log: o.Log, Sizes: o.Sizes, Password: "bench-password", Ports: &portPool{}, Profile: o.ProfileDir != "", WorkTree: o.WorkTree}
	for i := 0; i < o.Sizes.Users; i++ {
		env.Users = append(env.Users, fmt.Sprintf("bench-%03d@bench.test", i))
	}
	env.Big = "big@bench.test"
	env.Users = append(env.Users, env.Big)
	defer env.removeBinary()
	defer removeAllLater()
	var err error
	if env.Hash, err = password.HashScheme(o.AuthScheme, env.Password); err != nil {
		return nil, err
	}
	if want := o.Sizes.Users; want < o.Sizes.MixedWorkers {
		return nil, fmt.Errorf("sizes: %d users for %d mixed workers: each worker needs its own users", want, o.Sizes.MixedWorkers)
	}

	corpus, err := loadCorpus(0)
	if err != nil {
		return nil, err
	}
	newMail := smallMessages(corpus, 64<<10)
	sent := smallMessages(corpus, 16<<10)
	big := corpus
	if len(big) > o.Sizes.BigMessages {
		big = big[:o.Sizes.BigMessages]
	}
	o.Log.Info("corpus loaded", "messages", len(corpus), "big mailbox", len(big))

	for _, c := range cols {
		if strings.HasPrefix(c.Name, "dovecot") {
			if err := ensureDovecot(ctx, env); err != nil {
				return nil, err
			}
			break
		}
	}
	if o.ProfileDir != "" {
		if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
			return nil, err
		}
	}

	// Each round runs every server once, one after the other; the table
	// keeps each server's best value over the rounds (other work on the
	// machine only ever makes a number worse).
	var rounds []*Report
	for round := 1; round <= max(o.Rounds, 1); round++ {
		rep := newReport(cols)
		rounds = append(rounds, rep)
		for _, srv := range cols {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			// The previous server's files (and their removal) leave dirty
			// pages and journal work that the kernel would write back
			// during this server's run: write them now.
			settleDisk(ctx, o.Sizes.Settle)
			o.Log.Info("server: starting", "server", srv.Name, "round", round)
			t, err := srv.Start(ctx, env)
			if err != nil {
				reason := "n/a (failed to start)"
				switch {
				case errors.Is(err, errNoVersitygw):
					reason = "n/a (versitygw not installed)"
				case errors.Is(err, errNotBuilt):
					reason = "n/a (not built yet)"
				default:
					rep.Notes = append(rep.Notes, fmt.Sprintf("%s did not start: %v", srv.Title, firstLine(err)))
				}
				o.Log.Warn("server: not started", "server", srv.Name, "err", err)
				for _, m := range rep.Metrics {
					rep.set(m.Key, srv.Name, cell{NA: reason})
				}
				continue
			}
			err = runWorkloads(ctx, o, env, rep, srv, t, round, corpus, big, newMail, sent)
			if serr := t.Stop(context.Background()); serr != nil && err == nil {
				err = serr
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", srv.Name, err)
			}
		}
	}
	rep := bestOf(rounds)

	rep.Notes = append(rep.Notes, describeRun(o, env, len(corpus), len(big))...)
	table := rep.Markdown()
	fmt.Fprint(o.Out, "\n"+table)
	for _, n := range rep.Notes {
		fmt.Fprintln(o.Out, "- "+n)
	}
	if o.Results != "" {
		info := machineInfo(started, load0, env.builtFrom)
		profiles := ""
		if o.ProfileDir != "" {
			profiles = summariseProfiles(o.ProfileDir)
		}
		if err := writeResults(o.Results, o.Sizes, info, table, rep.Notes, profiles); err != nil {
			return nil, err
		}
		o.Log.Info("results written", "file", o.Results)
	}
	return rep, nil
}

// runWorkloads runs every workload against one started server.
// Memory does not depend on the machine's load: the idle connections
// are opened in the first round only.
func runWorkloads(ctx context.Context, o Options, env *runEnv, rep *Report, srv server, t Target, round int, corpus, big, newMail, sent [][]byte) error {
	sz := o.Sizes
	log := o.Log.With("server", srv.Name)
	name := srv.Name
	users := env.Users[:sz.Users]
	rcpt := func(i int) string { return users[i%len(users)] }
	prof, _ := t.(Profiler)
	profile := func(phase string, seconds int) func() {
		if prof == nil || o.ProfileDir == "" {
			return func() {}
		}
		return startCPUProfile(ctx, prof.PprofAddr(), filepath.Join(o.ProfileDir, name+"."+phase+".cpu.pprof"), seconds)
	}

	s3, _ := t.(S3Counter)
	requests := func() map[string]int64 {
		if s3 == nil {
			return nil
		}
		m, err := s3.S3Requests(ctx)
		if err != nil {
			log.Warn("S3 request counts", "err", err)
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: S3 request counts failed: %v", srv.Title, firstLine(err)))
			return nil
		}
		return m
	}
	perUnit := func(key string, before, after map[string]int64, method string, n int) {
		if s3 == nil {
			return
		}
		if before == nil || after == nil || n == 0 {
			rep.set(key, name, cell{NA: "n/a (no counts)"})
			return
		}
		rep.set(key, name, cell{V: float64(after[method]-before[method]) / float64(n), Prec: 2})
	}

	if o.runs("lmtp") {
		putsBefore := requests()
		log.Info("lmtp: 1 sender", "messages", sz.LMTP1Messages)
		stopTrace := func() {}
		if prof != nil && o.ProfileDir != "" {
			// An execution trace shows where a delivery's wall time goes
			// (go tool trace -pprof=syscall|sync|sched FILE).
			stopTrace = startTrace(ctx, prof.PprofAddr(), filepath.Join(o.ProfileDir, name+".lmtp1.trace"), 1)
		}
		r1, err := runLMTP(ctx, t.LMTPAddr(), 1, 0, sz.LMTP1Messages, corpus, rcpt, sz.LMTPMaxTime)
		stopTrace()
		if err != nil {
			return err
		}
		rep.set("lmtp1.rate", name, cell{V: r1.PerSec(), Prec: 1})
		rep.set("lmtp1.p99", name, cell{V: r1.Lat.p99("deliver"), Prec: 1})
		noteErrors(rep, srv, "LMTP 1 sender", r1.Errors, r1.Delivered, r1.FirstErr)

		log.Info("lmtp: 8 senders", "messages", sz.LMTP8Messages)
		stop := profile("lmtp8", 10)
		if prof != nil && o.ProfileDir != "" {
			// Block and mutex profiles are cumulative: the difference to
			// this snapshot is the 8-sender phase.
			saveProfile(ctx, prof.PprofAddr(), "block", filepath.Join(o.ProfileDir, name+".lmtp8-base.block.pprof"))
			saveProfile(ctx, prof.PprofAddr(), "mutex", filepath.Join(o.ProfileDir, name+".lmtp8-base.mutex.pprof"))
		}
		r8, err := runLMTP(ctx, t.LMTPAddr(), 8, sz.LMTP1Messages, sz.LMTP8Messages, corpus, rcpt, sz.LMTPMaxTime)
		if prof != nil && o.ProfileDir != "" {
			saveProfile(ctx, prof.PprofAddr(), "block", filepath.Join(o.ProfileDir, name+".lmtp8.block.pprof"))
			saveProfile(ctx, prof.PprofAddr(), "mutex", filepath.Join(o.ProfileDir, name+".lmtp8.mutex.pprof"))
		}
		stop()
		if err != nil {
			return err
		}
		rep.set("lmtp8.rate", name, cell{V: r8.PerSec(), Prec: 1})
		rep.set("lmtp8.p99", name, cell{V: r8.Lat.p99("deliver"), Prec: 1})
		noteErrors(rep, srv, "LMTP 8 senders", r8.Errors, r8.Delivered, r8.FirstErr)
		perUnit("s3.put_per_msg", putsBefore, requests(), "PUT", r1.Delivered+r8.Delivered)
	} else {
		skipped(rep, name, "lmtp")
	}

	// The mixed load runs before the download, whose cold-cache pass
	// empties bucketmail-s3's read cache: a running server's cache holds
	// the mail it was delivered, as every other server's page cache does.
	if o.runs("mixed") {
		log.Info("mixed IMAP", "workers", sz.MixedWorkers, "duration", sz.MixedDuration)
		stop := profile("mixed", int(sz.MixedDuration.Seconds())-2)
		mx, err := runMixed(ctx, t, env, newMail, sent)
		stop()
		if err != nil {
			return err
		}
		rep.set("mixed.rate", name, cell{V: mx.OpsPerSec(), Prec: 0})
		for _, op := range mixedOps {
			rep.set("mixed.p99."+op, name, cell{V: mx.Lat.p99(op), Prec: 1})
		}
		rep.set("mixed.p99.lmtp", name, cell{V: mx.Deliveries.p99("deliver"), Prec: 1})
		noteErrors(rep, srv, "mixed IMAP sessions", mx.Errors, mx.Sessions, mx.FirstErr)
		log.Info("mixed IMAP", "ops", mx.Ops, "sessions", mx.Sessions, "errors", mx.Errors)
	} else {
		skipped(rep, name, "mixed")
	}

	if o.runs("download") {
		log.Info("download: filling the large mailbox", "messages", len(big))
		fill, err := runLMTP(ctx, t.LMTPAddr(), 8, 0, len(big), big, func(int) string { return env.Big }, 10*time.Minute)
		if err != nil {
			return err
		}
		noteErrors(rep, srv, "filling the large mailbox", fill.Errors, fill.Delivered, fill.FirstErr)
		if s3 != nil {
			// One unmeasured pass on an empty read cache (GETs per
			// message, cold); the measured passes then count the warm
			// GETs.
			if err := s3.DropCache(ctx); err != nil {
				return err
			}
			before := requests()
			cold, err := runDownload(ctx, t, env, 1)
			if err != nil {
				return err
			}
			perUnit("s3.get_fetch_cold", before, requests(), "GET", int(cold.Messages))
		}
		warmBefore := requests()
		dl, err := runDownload(ctx, t, env, sz.Downloads)
		if err != nil {
			return err
		}
		rep.set("download.rate", name, cell{V: median(dl.MBps), Prec: 1})
		perUnit("s3.get_fetch_warm", warmBefore, requests(), "GET", int(dl.Messages)*len(dl.MBps))
		if prof != nil && o.ProfileDir != "" {
			// Extra passes under the profiler (not measured).
			stop := profile("download", 4)
			for end := time.Now().Add(4 * time.Second); time.Now().Before(end); {
				if _, err := runDownload(ctx, t, env, 1); err != nil {
					break
				}
			}
			stop()
		}
		log.Info("download", "messages", dl.Messages, "bytes", dl.Bytes, "MB/s", dl.MBps)
	} else {
		skipped(rep, name, "download")
	}

	if o.runs("idle") && round == 1 {
		log.Info("idle connections", "conns", sz.IdleConns)
		var whileOpen func()
		if prof != nil && o.ProfileDir != "" {
			whileOpen = func() {
				saveProfile(ctx, prof.PprofAddr(), "heap", filepath.Join(o.ProfileDir, name+".idle.heap.pprof"))
				saveProfile(ctx, prof.PprofAddr(), "goroutine", filepath.Join(o.ProfileDir, name+".idle.goroutine.pprof"))
			}
		}
		id, err := runIdle(ctx, t, env, sz.IdleConns, whileOpen)
		if err != nil {
			return err
		}
		rep.set("idle.kib", name, cell{V: id.PerConnKiB, Prec: 1})
		log.Info("idle connections", "before MiB", id.Before>>20, "after MiB", id.After>>20, "KiB/conn", id.PerConnKiB, "open s", id.OpenSeconds)
	} else {
		skipped(rep, name, "idle")
	}

	// S3 and reindex rows: only a server with those abilities fills them
	// (S3Counter: PUTs per delivered message from the counters around the
	// LMTP phases, GETs per FETCH around a cold and a warm download;
	// Reindexer: the reindex of a ReindexMessages-message account, in the
	// first round only).
	if s3 == nil {
		for _, k := range []string{"s3.put_per_msg", "s3.get_fetch_cold", "s3.get_fetch_warm"} {
			rep.set(k, name, cell{NA: "n/a (no S3 mode)"})
		}
	}
	ri, ok := t.(Reindexer)
	switch {
	case !ok:
		for _, k := range []string{"reindex.seconds", "reindex.requests"} {
			rep.set(k, name, cell{NA: "n/a (no bucket)"})
		}
	case round == 1 && o.runs("reindex"):
		user := users[0]
		log.Info("reindex: filling the account", "user", user, "messages", sz.ReindexMessages)
		fill, err := runLMTP(ctx, t.LMTPAddr(), 8, 0, sz.ReindexMessages, corpus, func(int) string { return user }, 10*time.Minute)
		if err != nil {
			return err
		}
		noteErrors(rep, srv, "filling the reindex account", fill.Errors, fill.Delivered, fill.FirstErr)
		d, reqs, err := ri.Reindex(ctx, user)
		if err != nil {
			return err
		}
		var total int64
		for _, n := range reqs {
			total += n
		}
		rep.set("reindex.seconds", name, cell{V: d.Seconds(), Prec: 1})
		rep.set("reindex.requests", name, cell{V: float64(total), Prec: 0})
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s reindex of %s (%d delivered for it plus its share of the other loads): %v, requests %v", srv.Title, user, fill.Delivered, d.Round(time.Millisecond), reqs))
		log.Info("reindex", "seconds", d.Seconds(), "requests", reqs)
	default:
		for _, k := range []string{"reindex.seconds", "reindex.requests"} {
			rep.set(k, name, cell{NA: "n/a (not run)"})
		}
	}
	return nil
}

// noteErrors adds a note when a phase had failed operations.
func noteErrors(rep *Report, srv server, phase string, errs, done int, first error) {
	if errs == 0 {
		return
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("%s, %s: %d failed (of %d), first: %v", srv.Title, phase, errs, errs+done, firstLine(first)))
}

func firstLine(err error) string {
	if err == nil {
		return ""
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// describeRun returns the notes on how the numbers were made.
func describeRun(o Options, env *runEnv, corpusN, bigN int) []string {
	sz := o.Sizes
	return []string{
		fmt.Sprintf("best of %d round(s) per value (each round runs the servers one after the other; the idle connections only in the first; before each server starts, sync(2), the page cache dropped (as root) and a pause of %s, so that it does not pay for the previous server's dirty pages; server data is removed at the end of the run, since removing it between servers slowed the next one's file creation)", max(o.Rounds, 1), o.Sizes.Settle),
		fmt.Sprintf("sizes %q: %d users; LMTP %d messages (1 sender) and %d (8 senders) from %d corpus messages (shared/corpus/real, CRLF); large mailbox %d messages, median of %d download passes; mixed IMAP %d connections for %v, %d cycles per login; %d idle connections",
			sz.Name, sz.Users, sz.LMTP1Messages, sz.LMTP8Messages, corpusN, bigN, sz.Downloads, sz.MixedWorkers, sz.MixedDuration, sz.MixedCycles, sz.IdleConns),
		fmt.Sprintf("passwords: every user's hash is %s in both servers (bucketmail's user add makes ARGON2ID; -auth-scheme changes it)", strings.SplitN(env.Hash, "}", 2)[0]+"}"),
		"Dovecot is tuned as an operator tuning for speed would (login and imap process reuse with service_count = 0, process_min_avail, auth cache, maildir_very_dirty_syncs); Dovecot default keeps the default service settings and only raises process and connection limits; ratios compare with the tuned one",
		"memory is the proportional set size (PSS, /proc/PID/smaps_rollup) summed over the server's processes, measured on a freshly restarted server before and 3 s after opening the idle connections",
		"p99 is the nearest-rank 99th percentile of the command's latency as the client sees it; MB = 10^6 bytes of message data",
	}
}

// bestOf merges rounds: each cell is the best value any round had
// (highest rate, lowest latency or memory); notes are kept once. With
// more than one round, a note lists every round's rates.
func bestOf(rounds []*Report) *Report {
	if len(rounds) == 1 {
		return rounds[0]
	}
	out := newReport(rounds[0].Columns)
	seen := map[string]bool{}
	for _, r := range rounds {
		for _, n := range r.Notes {
			if !seen[n] {
				seen[n] = true
				out.Notes = append(out.Notes, n)
			}
		}
	}
	for _, m := range out.Metrics {
		for _, c := range out.Columns {
			var best cell
			have := false
			var all []string
			for _, r := range rounds {
				v := r.get(m.Key, c.Name)
				if v.ok() {
					all = append(all, v.String())
				}
				switch {
				case !have:
					best, have = v, true
				case !v.ok():
				case !best.ok():
					best = v
				case m.Higher && v.V > best.V, !m.Higher && v.V < best.V:
					best = v
				}
			}
			out.set(m.Key, c.Name, best)
			if m.Higher && len(all) > 1 {
				out.Notes = append(out.Notes, fmt.Sprintf("rounds, %s, %s: %s", m.Label, c.Title, strings.Join(all, " / ")))
			}
		}
	}
	return out
}

// runs reports whether workload w is selected.
func (o Options) runs(w string) bool { return o.Only == nil || o.Only[w] }

// skipped marks the rows of workload w as not run.
func skipped(rep *Report, srv, w string) {
	for _, m := range rep.Metrics {
		if strings.HasPrefix(m.Key, w) {
			rep.set(m.Key, srv, cell{NA: "n/a (not run)"})
		}
	}
}

// settleDisk writes every dirty page to disk (sync(2)), empties the page
// cache where it may (root: /proc/sys/vm/drop_caches), and then waits
// pause, so that a server neither pays for the previous one's writes nor
// finds memory in a different state than the first server of the run.
func settleDisk(ctx context.Context, pause time.Duration) {
	syscall.Sync()
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("1\n"), 0o200)
	select {
	case <-ctx.Done():
	case <-time.After(pause):
	}
}
