package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bucketmail/bucketmail/internal/metadb"
	"github.com/bucketmail/bucketmail/internal/userdb/embedded"
)

// pprofHook is added to package main of cmd/bucketmail at build time with
// `go build -overlay` (the source tree is not changed): with
// BUCKETMAIL_BENCH_PPROF=host:port in its environment the binary serves
// net/http/pprof there, with block and mutex profiling on. Without that variable it does nothing.
const pprofHook = `package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
)

var _ = func() int {
	if addr := os.Getenv("BUCKETMAIL_BENCH_PPROF"); addr != "" {
		// Blocking events of 100 µs and more, every 10th mutex contention.
		runtime.SetBlockProfileRate(100000)
		runtime.SetMutexProfileFraction(10)
		go http.ListenAndServe(addr, nil)
	}
	return 0
}()
`

// binary builds cmd/bucketmail once (with the pprof hook) into a temp dir.
func (env *runEnv) binary(ctx context.Context) (string, error) {
	env.binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bmbench-bin-")
		if err != nil {
			env.binErr = err
			return
		}
		env.binDir = dir
		root, err := env.source(ctx, dir)
		if err != nil {
			env.binErr = err
			return
		}
		hook := filepath.Join(dir, "zz_bench_pprof.go")
		if err := os.WriteFile(hook, []byte(pprofHook), 0o644); err != nil {
			env.binErr = err
			return
		}
		overlay, _ := json.Marshal(map[string]any{"Replace": map[string]string{
			filepath.Join(root, "cmd", "bucketmail", "zz_bench_pprof.go"): hook,
		}})
		ov := filepath.Join(dir, "overlay.json")
		if err := os.WriteFile(ov, overlay, 0o644); err != nil {
			env.binErr = err
			return
		}
		bin := filepath.Join(dir, "bucketmail")
		cmd := exec.CommandContext(ctx, "go", "build", "-overlay", ov, "-o", bin, "./cmd/bucketmail")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			env.binErr = fmt.Errorf("go build ./cmd/bucketmail: %v\n%s", err, out)
			return
		}
		env.bin = bin
	})
	return env.bin, env.binErr
}

// removeBinary removes the directory binary built (at the end of a run).
func (env *runEnv) removeBinary() {
	if env.binDir != "" {
		os.RemoveAll(env.binDir)
	}
}

// source returns the module tree to build: a clean export of HEAD
// (git archive) under dir, or the work tree itself with WorkTree.
func (env *runEnv) source(ctx context.Context, dir string) (string, error) {
	root := repoRoot()
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	if env.WorkTree {
		head, _ := git("rev-parse", "HEAD")
		env.builtFrom = "the work tree at " + root + " (HEAD " + head + " plus any uncommitted changes)"
		return root, nil
	}
	head, err := git("rev-parse", "HEAD")
	if err != nil {
		return "", fmt.Errorf("git rev-parse HEAD (use -worktree outside a git checkout): %w", err)
	}
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		return "", err
	}
	archive := exec.CommandContext(ctx, "git", "archive", "--format=tar", head)
	archive.Dir = root
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	untar.Stdin = pipe
	if err := archive.Start(); err != nil {
		return "", fmt.Errorf("git archive: %w", err)
	}
	if out, err := untar.CombinedOutput(); err != nil {
		archive.Wait()
		return "", fmt.Errorf("tar -x: %v: %s", err, out)
	}
	if err := archive.Wait(); err != nil {
		return "", fmt.Errorf("git archive: %w", err)
	}
	env.builtFrom = "a clean export of commit " + head + " (git archive)"
	return src, nil
}

// bucketmail is a running `bucketmail serve`.
type bucketmail struct {
	cmd        *exec.Cmd
	done       chan struct{}
	waitErr    error
	dir        string
	imap, lmtp string
	pprof      string
	logFile    *os.File
	bin        string
	args, env  []string
}

// start starts serve and waits for both listeners.
func (b *bucketmail) start(ctx context.Context) error {
	b.cmd = exec.Command(b.bin, b.args...)
	b.cmd.Stdout, b.cmd.Stderr = b.logFile, b.logFile
	b.cmd.Env = b.env
	if err := b.cmd.Start(); err != nil {
		return fmt.Errorf("bucketmail serve: %w", err)
	}
	b.done = make(chan struct{})
	go func() { b.waitErr = b.cmd.Wait(); close(b.done) }()
	for _, w := range []struct{ addr, greeting string }{{b.imap, "* OK"}, {b.lmtp, "220 "}} {
		if err := waitGreeting(ctx, w.addr, w.greeting, 30*time.Second, b.done); err != nil {
			return fmt.Errorf("bucketmail serve: %w\n%s", err, b.log())
		}
	}
	return nil
}

// Restart stops serve (SIGTERM) and starts it again on the same data.
func (b *bucketmail) Restart(ctx context.Context) error {
	if err := b.stopProcess(); err != nil {
		return err
	}
	var err error
	for i := 0; i < 20; i++ { // the ports were just released
		if err = b.start(ctx); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

func (b *bucketmail) IMAPAddr() string  { return b.imap }
func (b *bucketmail) LMTPAddr() string  { return b.lmtp }
func (b *bucketmail) PprofAddr() string { return b.pprof }

// Memory is the PSS of the serve process.
func (b *bucketmail) Memory() (int64, error) { return treePSS(b.cmd.Process.Pid) }

func startBucketmailFS(ctx context.Context, env *runEnv) (Target, error) {
	bin, err := env.binary(ctx)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bmbench-bucketmail-")
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := provisionBucketmail(ctx, env, bin, data); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	b := &bucketmail{dir: dir}
	if b.imap, err = env.Ports.Addr(); err != nil {
		return nil, err
	}
	if b.lmtp, err = env.Ports.Addr(); err != nil {
		return nil, err
	}
	if b.logFile, err = os.Create(filepath.Join(dir, "serve.log")); err != nil {
		return nil, err
	}
	b.args = []string{"serve", "--data-dir", data, "--imap-listen", b.imap, "--lmtp-listen", b.lmtp}
	b.bin = bin
	b.env = os.Environ()
	if env.Profile {
		if b.pprof, err = env.Ports.Addr(); err != nil {
			return nil, err
		}
		b.env = append(b.env, "BUCKETMAIL_BENCH_PPROF="+b.pprof)
	}
	if err := b.start(ctx); err != nil {
		b.Stop(ctx)
		return nil, err
	}
	return b, nil
}

// provisionBucketmail adds the benchmark users: the first with
// `bucketmail user add` (the supported path, which also creates the
// index), then every user's hash set to env.Hash through the embedded
// user database, so both servers verify the same scheme at LOGIN.
func provisionBucketmail(ctx context.Context, env *runEnv, bin, data string) error {
	return provisionBucketmailWith(ctx, env, bin, data, []string{"--data-dir", data}, nil)
}

// provisionBucketmailWith is provisionBucketmail with the subcommand's
// flags and environment (S3 mode: the bucket flags and credentials).
func provisionBucketmailWith(ctx context.Context, env *runEnv, bin, data string, flags, environ []string) error {
	cmd := exec.CommandContext(ctx, bin, append([]string{"user", "add", env.Users[0], "--password-stdin"}, flags...)...)
	cmd.Env = environ
	cmd.Stdin = strings.NewReader(env.Password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bucketmail user add: %v\n%s", err, out)
	}
	db, err := metadb.OpenSQLite(ctx, filepath.Join(data, "index.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	hash := env.Hash
	users, err := embedded.New(ctx, db, embedded.WithHasher(func(string) (string, error) { return hash, nil }))
	if err != nil {
		return err
	}
	if err := users.SetPasswordHash(ctx, env.Users[0], hash); err != nil {
		return err
	}
	for _, u := range env.Users[1:] {
		if err := users.AddUser(ctx, u, env.Password); err != nil {
			return fmt.Errorf("bucketmail: add %s: %w", u, err)
		}
	}
	return nil
}

func (b *bucketmail) log() string {
	data, _ := os.ReadFile(filepath.Join(b.dir, "serve.log"))
	return tailString(string(data), 3000)
}

// Stop stops serve and removes the data.
func (b *bucketmail) Stop(ctx context.Context) error {
	err := b.stopProcess()
	if b.logFile != nil {
		b.logFile.Close()
	}
	removeLater(b.dir)
	return err
}

// stopProcess sends SIGTERM and waits up to 60 s (then kills).
func (b *bucketmail) stopProcess() error {
	if b.cmd == nil || b.done == nil {
		return nil
	}
	select {
	case <-b.done:
		return nil
	default:
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
		if b.waitErr != nil {
			return fmt.Errorf("bucketmail serve exit: %v\n%s", b.waitErr, b.log())
		}
		return nil
	case <-time.After(60 * time.Second):
		b.cmd.Process.Kill()
		<-b.done
		return fmt.Errorf("bucketmail serve: still running 60 s after SIGTERM; killed")
	}
}
