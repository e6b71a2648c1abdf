package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// errNotBuilt marks a server mode or metric that the server does not
// have yet: its column or row shows "n/a (not built yet)".
var errNotBuilt = errors.New("not built yet")

// Target is one running server under test.
type Target interface {
	// IMAPAddr and LMTPAddr are host:port on loopback.
	IMAPAddr() string
	LMTPAddr() string
	// Memory returns the proportional set size (PSS) summed over the
	// server's processes, in bytes.
	Memory() (int64, error)
	// Restart stops the server and starts it again on the same data
	// and addresses (a fresh process for the memory measurement).
	Restart(ctx context.Context) error
	// Stop stops the server and removes its temp dirs.
	Stop(ctx context.Context) error
}

// Profiler is a Target that serves pprof (bucketmail built with the
// bench's pprof overlay).
type Profiler interface {
	PprofAddr() string
}

// S3Counter is a Target that reports its blob store's requests
// (bucketmail's S3 mode, counted from versitygw's request log): request
// method to count since start. DropCache empties its read cache (a
// restart of the server).
type S3Counter interface {
	S3Requests(ctx context.Context) (map[string]int64, error)
	DropCache(ctx context.Context) error
}

// Reindexer is a Target that can rebuild an account's index from the
// bucket: the time it took and its requests by method.
type Reindexer interface {
	Reindex(ctx context.Context, user string) (time.Duration, map[string]int64, error)
}

// server describes one column: how to start it.
type server struct {
	Name  string // column name
	Title string // column heading
	Start func(ctx context.Context, env *runEnv) (Target, error)
}

// servers are the columns, in table order.
var servers = []server{
	{Name: "dovecot", Title: "Dovecot", Start: func(ctx context.Context, env *runEnv) (Target, error) { return startDovecot(ctx, env, true) }},
	{Name: "dovecot-default", Title: "Dovecot default", Start: func(ctx context.Context, env *runEnv) (Target, error) { return startDovecot(ctx, env, false) }},
	{Name: "bucketmail-fs", Title: "bucketmail-fs", Start: startBucketmailFS},
	{Name: "bucketmail-s3", Title: "bucketmail-s3", Start: startBucketmailS3},
}

// runEnv is what every server start needs.
type runEnv struct {
	Log      *slog.Logger
	Sizes    Sizes
	Users    []string // bench-N@bench.test, then the big account last
	Big      string   // the account with the large mailbox
	Password string
	Hash     string // the stored password hash for every user, "{SCHEME}..."
	Ports    *portPool
	Profile  bool // serve pprof (bucketmail)
	WorkTree bool // build from the work tree instead of a clean export of HEAD
	binOnce  sync.Once
	// builtFrom says what the binary was built from, for the results.
	builtFrom string
	bin       string // bucketmail binary
	binDir    string // the temporary directory holding it (and the exported source)
	binErr    error
}

// portPool hands out free loopback ports in 22000-22999.
type portPool struct {
	mu   sync.Mutex
	used map[int]bool
}

const portLo, portHi = 22000, 22999

// Get returns a port nobody listens on now and that this pool has not
// handed out before.
func (p *portPool) Get() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used == nil {
		p.used = map[int]bool{}
	}
	start := portLo + rand.IntN(portHi-portLo+1)
	for i := 0; i <= portHi-portLo; i++ {
		port := portLo + (start-portLo+i)%(portHi-portLo+1)
		if p.used[port] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		ln.Close()
		p.used[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("ports: no free port in 127.0.0.1:%d-%d", portLo, portHi)
}

// Addr returns "127.0.0.1:PORT" for a fresh port.
func (p *portPool) Addr() (string, error) {
	port, err := p.Get()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// waitGreeting dials addr until the server greets with prefix.
func waitGreeting(ctx context.Context, addr, prefix string, d time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err == nil && strings.HasPrefix(line, prefix) {
				return nil
			}
			last = fmt.Errorf("greeting %q: %v", line, err)
		} else {
			last = err
		}
		select {
		case <-exited:
			return fmt.Errorf("server exited before %s answered", addr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not answering after %v: %v", addr, d, last)
}

// pss returns the proportional set size of one process in bytes, from
// /proc/PID/smaps_rollup.
func pss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if f := strings.Fields(string(line)); len(f) >= 2 && f[0] == "Pss:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no Pss in /proc/%d/smaps_rollup", pid)
}

// processTree returns pid and all its descendants.
func processTree(pid int) []int {
	parent := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parens.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		parent[ppid] = append(parent[ppid], child)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, parent[out[i]]...)
	}
	return out
}

// treePSS sums pss over the process tree of pid, ignoring processes that
// exit while it reads.
func treePSS(pid int) (int64, error) {
	var sum int64
	for i, p := range processTree(pid) {
		v, err := pss(p)
		if err != nil {
			if i == 0 {
				return 0, err
			}
			continue
		}
		sum += v
	}
	return sum, nil
}

// Server data is removed at the end of the run, not when a server stops:
// on a filesystem like this VM's (ext4 without a journal), the inode
// allocator skips inodes freed in the last 60-300 s, so removing one
// server's tens of thousands of files made the next server's file
// creation slower (bench/RESULTS.md).
var removals struct {
	mu   sync.Mutex
	dirs []string
}

// removeLater schedules dir for removal by removeAllLater.
func removeLater(dir string) {
	removals.mu.Lock()
	defer removals.mu.Unlock()
	removals.dirs = append(removals.dirs, dir)
}

// removeAllLater removes the directories of stopped servers.
func removeAllLater() {
	removals.mu.Lock()
	dirs := removals.dirs
	removals.dirs = nil
	removals.mu.Unlock()
	for _, d := range dirs {
		os.RemoveAll(d)
	}
}
