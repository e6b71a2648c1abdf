package main

// Cluster wiring: the bus named by --bus, the consistency-window context
// of the user database, and the control socket through which CLI
// commands reach a serve running on the same data directory when there
// is no cross-process bus (--bus local, the default).
//
// Control socket: serve listens on DATA_DIR/control.sock (mode 0600).
// A client writes one bus event per line, JSON as bus.Marshal encodes
// it, and reads one reply line per event: "ok" once serve has applied it
// (cluster.Node.Handle: consistency window, session wake-ups, cache
// eviction), or "error TEXT". `bucketmail user add/passwd/del` send
// "updating" before the write and "updated" after it; every CLI command
// that changes the store (user, import, reindex) sends its store changes.
// A missing socket, or one nobody listens on, means no server is
// running: the CLI goes on without.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bucketmail/bucketmail/internal/bus"
	"github.com/bucketmail/bucketmail/internal/bus/local"
	busnats "github.com/bucketmail/bucketmail/internal/bus/nats"
	buspg "github.com/bucketmail/bucketmail/internal/bus/pg"
	"github.com/bucketmail/bucketmail/internal/cluster"
	"github.com/bucketmail/bucketmail/internal/config"
)

// controlSocketName is the control socket's name in the data directory.
const controlSocketName = "control.sock"

// maxSocketPath is the size of sockaddr_un.sun_path on Linux.
const maxSocketPath = 108

// controlTimeout bounds one event's round trip on the control socket.
const controlTimeout = 5 * time.Second

// openBus opens the bus cfg.Bus names with origin as node name. For a
// CLI command (cli) with the local bus, the bus is a client of serve's
// control socket instead.
func openBus(ctx context.Context, cfg config.Config, origin string, cli bool, log *slog.Logger) (bus.Bus, error) {
	switch cfg.BusKind() {
	case "local":
		if cli {
			return newControlClient(filepath.Join(cfg.DataDir, controlSocketName), origin, log), nil
		}
		return local.New(origin, log), nil
	case "nats":
		return busnats.Open(ctx, busnats.Config{URL: cfg.Bus, Node: origin, Logger: log})
	case "postgres":
		return buspg.Open(ctx, buspg.Config{URL: cfg.Bus, Node: origin, Logger: log})
	}
	return nil, fmt.Errorf("bus: unknown %q", cfg.Bus)
}

// announce publishes an account-level hint (updating / updated) for the
// account change of a CLI command. A bus that cannot take it is not an
// error: the change is made anyway, and other servers see it when their
// auth caches expire (logged).
func (e *env) announce(ctx context.Context, kind bus.Kind, account, address string) {
	if !e.busReady(ctx) {
		e.log.Warn("bus: not connected; other servers see this change when their auth caches expire", "bus", e.cfg.BusKind())
		return
	}
	if err := e.node.Announce(ctx, kind, account, address); err != nil {
		e.log.Warn("bus: account hint not sent; other servers see this change when their auth caches expire", "kind", kind.String(), "err", err)
	}
}

// busReady waits up to 3 s for a networked bus to connect (a CLI
// command opens it just before announcing).
func (e *env) busReady(ctx context.Context) bool {
	deadline := time.Now().Add(3 * time.Second)
	for !e.bus.Healthy() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// controlClient is the CLI's bus with --bus local: Publish sends the event
// to serve's control socket and waits for "ok". No server running is not
// an error (Publish returns nil). Subscriptions see nothing.
type controlClient struct {
	path string
	log  *slog.Logger
	hub  *bus.Hub

	mu     sync.Mutex // serialises Stamp and the round trip
	st     *bus.Stamper
	conn   net.Conn
	rd     *bufio.Reader
	absent bool // no server: stop trying
	closed bool
}

var _ bus.Bus = (*controlClient)(nil)

func newControlClient(path, origin string, log *slog.Logger) *controlClient {
	return &controlClient{path: path, log: log, hub: bus.NewHub(log), st: bus.NewStamper(origin)}
}

// Publish implements bus.Publisher. Errors: bus.ErrInvalid, bus.ErrClosed,
// bus.ErrUnavailable (the server answered an error or broke the
// connection).
func (c *controlClient) Publish(ctx context.Context, ev bus.Event) error {
	if err := ev.Validate(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return bus.ErrClosed
	}
	data, err := bus.Marshal(c.st.Stamp(ev))
	if err != nil {
		return err
	}
	if c.absent {
		return nil
	}
	if c.conn == nil {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", c.path)
		if err != nil {
			c.absent = true
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
				c.log.Debug("control socket: no server running", "path", c.path, "err", err)
			} else {
				c.log.Warn("control socket: cannot reach the running server; it sees this change when its caches expire", "path", c.path, "err", err)
			}
			return nil
		}
		c.conn, c.rd = conn, bufio.NewReader(conn)
	}
	deadline := time.Now().Add(controlTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.conn.SetDeadline(deadline)
	if _, err := c.conn.Write(append(data, '\n')); err != nil {
		c.dropConn()
		return fmt.Errorf("control socket: %v: %w", err, bus.ErrUnavailable)
	}
	line, err := c.rd.ReadString('\n')
	if err != nil {
		c.dropConn()
		return fmt.Errorf("control socket: %v: %w", err, bus.ErrUnavailable)
	}
	if line = strings.TrimRight(line, "\r\n"); line != "ok" {
		return fmt.Errorf("control socket: server answered %q: %w", line, bus.ErrUnavailable)
	}
	return nil
}

func (c *controlClient) dropConn() {
	c.conn.Close()
	c.conn, c.rd = nil, nil
}

// Subscribe implements bus.Subscriber (nothing is ever delivered).
func (c *controlClient) Subscribe(ctx context.Context, account string, queue int) (*bus.Subscription, error) {
	return c.hub.Subscribe(account, queue)
}

// Healthy is always true: no server running is a normal state.
func (c *controlClient) Healthy() bool { return true }

// Close implements bus.Bus.
func (c *controlClient) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		if c.conn != nil {
			c.dropConn()
		}
		c.hub.Close()
	}
	return nil
}

// controlServer is serve's end of the control socket.
type controlServer struct {
	ln   net.Listener
	path string
	node *cluster.Node
	log  *slog.Logger
	wg   sync.WaitGroup
	done chan struct{} // closed when serve returns

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// listenControl listens on DATA_DIR/control.sock. A socket left by a
// server that is gone is replaced; one a running server answers on is
// an error (two servers on one data directory).
//
// A path too long for a unix socket (108 bytes on Linux) is not fatal:
// it returns nil, nil after a warning (CLI changes then reach the server
// when its caches expire).
func listenControl(dataDir string, node *cluster.Node, log *slog.Logger) (*controlServer, error) {
	path := filepath.Join(dataDir, controlSocketName)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if len(path) >= maxSocketPath {
		log.Warn("control socket: data directory path too long for a unix socket; bucketmail user changes reach this server when its auth cache expires", "path", path)
		return nil, nil
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another server is running on this data directory", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &controlServer{ln: ln, path: path, node: node, log: log, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}, nil
}

// serve accepts connections until Close.
func (s *controlServer) serve(ctx context.Context) {
	defer close(s.done)
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.handle(ctx, c)
		}()
	}
}

// handle applies the events of one client, one reply line each.
func (s *controlServer) handle(ctx context.Context, c net.Conn) {
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 0, 4096), bus.MaxPayload+2)
	for sc.Scan() {
		ev, err := bus.Unmarshal(sc.Bytes())
		reply := "ok\n"
		if err != nil {
			reply = "error " + strings.ReplaceAll(err.Error(), "\n", " ") + "\n"
		} else {
			s.log.Debug("control socket: event", "kind", ev.Kind.String(), "account", ev.Account, "origin", ev.Origin)
			s.node.Handle(ctx, ev)
		}
		if _, err := io.WriteString(c, reply); err != nil {
			return
		}
	}
}

// Close stops listening, ends every connection and waits for them. Call
// it only after serve was started.
func (s *controlServer) Close() {
	s.ln.Close()
	<-s.done
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
