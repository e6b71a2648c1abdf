package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/testutil/cluster"
	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

// Log lines a server writes when its bus goes away and comes back. The
// wording is the server's; these match its slog text output loosely
// (a WARN line naming the bus, an INFO/WARN line saying it is back).
var (
	clBusDownLog = regexp.MustCompile(`(?i)level=(WARN|ERROR)\b.*\bbus\b.*(down|unavailable|disconnect|lost|unhealthy|poll)`)
	clBusUpLog   = regexp.MustCompile(`(?i)level=(INFO|WARN)\b.*\bbus\b.*(\bup\b|back|reconnect|restored|healthy|connected)`)
)

// clWaitLog waits up to d for a line matching re in n's log after byte
// offset from; it returns the line and the offset after it.
func clWaitLog(n *cluster.Node, re *regexp.Regexp, from int, d time.Duration) (string, int, bool) {
	deadline := time.Now().Add(d)
	for {
		log := n.Log()
		if from < len(log) {
			rest := log[from:]
			for _, line := range strings.SplitAfter(rest, "\n") {
				if re.MatchString(line) {
					end := from + strings.Index(rest, line) + len(line)
					return strings.TrimSpace(line), end, true
				}
			}
		}
		if time.Now().After(deadline) {
			return "", from, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clWaitMetric waits up to d for n's metric name to have value want.
// It returns what it last saw; present is false when the endpoint
// answers without the metric (not exported: the caller logs it).
func clWaitMetric(t *testing.T, n *cluster.Node, name string, want float64, d time.Duration) (got float64, present bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		v, ok, err := n.Metric(name)
		if err != nil {
			t.Errorf("%s: metrics: %v", n.Name, err)
			return 0, false
		}
		if !ok {
			return 0, false
		}
		if v == want || time.Now().After(deadline) {
			return v, true
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClusterBusRestart: sessions IDLE on servers B and C; nats-server
// is stopped; deliveries on A still reach both IDLE sessions, through
// polling, within the poll interval (5 s here) plus a margin; A, B and C
// log that the bus is down, and bucketmail_bus_up goes to 0; nats-server
// restarts on the same port, the servers log that it is back,
// bucketmail_bus_up is 1 again and deliveries reach B and C within 1 s
// again (faster than polling could).
func TestClusterBusRestart(t *testing.T) {
	const poll = 5 * time.Second
	c := cluster.Start(t, cluster.Options{Nodes: 3, PollInterval: poll, Metrics: true})
	clRequireShared(t, c)
	const acct, pw = "busrestart@example.org", "cluster-bus-1"
	c.AddUser(t, acct, pw)
	A, B, C := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	idlers := []*cluster.Watcher{
		cluster.Login(t, B.Name, B.IMAPAddr, acct, pw),
		cluster.Login(t, C.Name, C.IMAPAddr, acct, pw),
	}
	for _, w := range idlers {
		if _, err := w.Select("INBOX", nil).Wait(); err != nil {
			t.Fatalf("%s: SELECT INBOX: %v", w.Name, err)
		}
		w.Idle(t)
	}
	lc, err := e2e.DialLMTP(A.LMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	exists := 0
	// deliver delivers one message on A and returns how long each IDLE
	// session took to see its EXISTS (waiting up to wait).
	deliver := func(phase string, wait time.Duration) []time.Duration {
		t.Helper()
		exists++
		id := fmt.Sprintf("bus-%s-%d", phase, exists)
		t0 := time.Now() // latencies count from the start of the LMTP transaction
		if err := lc.Deliver1(sender, acct, clMessage(id, 1500)); err != nil {
			t.Fatalf("A: LMTP (%s): %v", phase, err)
		}
		var lat []time.Duration
		for _, w := range idlers {
			ev, ok := w.Wait(wait, func(e cluster.Event) bool { return e.Kind == "EXISTS" && e.Num == uint32(exists) })
			if !ok {
				t.Fatalf("%s: no * %d EXISTS within %v of delivery %q on A (events: %v)", w.Name, exists, wait, id, w.Pending())
			}
			lat = append(lat, ev.At.Sub(t0))
		}
		return lat
	}
	metricsOK := true
	checkMetric := func(phase string, want float64) {
		t.Helper()
		if !metricsOK {
			return
		}
		for _, n := range []*cluster.Node{B, C} {
			got, present := clWaitMetric(t, n, "bucketmail_bus_up", want, clWait)
			if !present {
				t.Logf("%s: /metrics has no bucketmail_bus_up (not exported yet): metric checks skipped", n.Name)
				metricsOK = false
				return
			}
			if got != want {
				t.Errorf("%s: %s: bucketmail_bus_up %v, want %v", n.Name, phase, got, want)
			} else {
				t.Logf("%s: %s: bucketmail_bus_up %v", n.Name, phase, got)
			}
		}
	}

	// Bus up.
	for i := range 2 {
		lat := deliver("up", clWait)
		t.Logf("bus up, delivery %d: EXISTS on B, C after %s", i+1, clLatencies(lat))
		for j, d := range lat {
			if d > clBusLatency {
				t.Errorf("bus up: %s saw EXISTS after %v, want within %v", idlers[j].Name, d, clBusLatency)
			}
		}
	}
	checkMetric("bus up", 1)
	logPos := make([]int, len(c.Nodes))

	// Bus down: polling.
	for i, n := range c.Nodes {
		logPos[i] = len(n.Log())
	}
	stopped := time.Now()
	c.NATS.Stop()
	for i, n := range c.Nodes {
		line, end, ok := clWaitLog(n, clBusDownLog, logPos[i], clWait)
		if !ok {
			t.Errorf("%s: no log line about the bus being down within %v of stopping nats-server (want one matching %s)", n.Name, clWait, clBusDownLog)
			continue
		}
		logPos[i] = end
		t.Logf("%s: %v after stopping nats-server: %s", n.Name, time.Since(stopped).Round(time.Millisecond), line)
	}
	checkMetric("bus down", 0)
	for i := range 2 {
		lat := deliver("down", poll+clWait)
		t.Logf("bus down, delivery %d: EXISTS on B, C after %s (poll interval %v)", i+1, clLatencies(lat), poll)
		for j, d := range lat {
			if d > poll+2*time.Second {
				t.Errorf("bus down: %s saw EXISTS after %v, want within the poll interval %v (+2 s)", idlers[j].Name, d, poll)
			}
		}
	}

	// Bus back.
	if err := c.NATS.Restart(); err != nil {
		t.Fatalf("restart nats-server: %v", err)
	}
	restarted := time.Now()
	for i, n := range c.Nodes { // A too: its publishes must reach the bus again
		line, _, ok := clWaitLog(n, clBusUpLog, logPos[i], clWait)
		if !ok {
			t.Errorf("%s: no log line about the bus being back within %v of restarting nats-server (want one matching %s)", n.Name, clWait, clBusUpLog)
			continue
		}
		t.Logf("%s: %v after restarting nats-server: %s", n.Name, time.Since(restarted).Round(time.Millisecond), line)
	}
	checkMetric("bus back", 1)
	for i := range 3 {
		lat := deliver("back", clWait)
		t.Logf("bus back, delivery %d: EXISTS on B, C after %s", i+1, clLatencies(lat))
		for j, d := range lat {
			if d > clBusLatency {
				t.Errorf("bus back: %s saw EXISTS after %v, want within %v (bus, not polling)", idlers[j].Name, d, clBusLatency)
			}
		}
	}
	for _, w := range idlers {
		w.Done(t)
	}
}

// TestClusterStartBusDown: a server started while nats-server is down
// starts, warns, serves, and sees another server's deliveries by polling
// (within the poll interval, 2 s here, plus a margin); when nats-server
// comes up it connects (logged) and deliveries reach its IDLE session
// within 1 s.
func TestClusterStartBusDown(t *testing.T) {
	const poll = 2 * time.Second
	c := cluster.Start(t, cluster.Options{Nodes: 1, PollInterval: poll})
	clRequireShared(t, c)
	const acct, pw = "startdown@example.org", "cluster-startdown-1"
	c.AddUser(t, acct, pw)
	A := c.Nodes[0]
	c.NATS.Stop()
	start := time.Now()
	B := c.AddNode(t)
	t.Logf("%s started with the bus down in %v", B.Name, time.Since(start).Round(time.Millisecond))
	w := cluster.Login(t, B.Name, B.IMAPAddr, acct, pw)
	if _, err := w.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("%s: SELECT: %v", B.Name, err)
	}
	w.Idle(t)
	lc, err := e2e.DialLMTP(A.LMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	deliver := func(i int, wait time.Duration) time.Duration {
		t.Helper()
		t0 := time.Now()
		if err := lc.Deliver1(sender, acct, clMessage(fmt.Sprintf("startdown-%d", i), 1200)); err != nil {
			t.Fatalf("A: LMTP: %v", err)
		}
		ev, ok := w.Wait(wait, func(e cluster.Event) bool { return e.Kind == "EXISTS" && e.Num == uint32(i) })
		if !ok {
			t.Fatalf("%s: no * %d EXISTS within %v (events: %v)", B.Name, i, wait, w.Pending())
		}
		return ev.At.Sub(t0)
	}
	if line, _, ok := clWaitLog(B, clBusDownLog, 0, clWait); !ok {
		t.Errorf("%s: no warning about the bus being down (want a line matching %s)", B.Name, clBusDownLog)
	} else {
		t.Logf("%s: %s", B.Name, line)
	}
	d := deliver(1, poll+clWait)
	t.Logf("bus down since %s's start: EXISTS after %v (poll interval %v)", B.Name, d.Round(100*time.Microsecond), poll)
	if d > poll+2*time.Second {
		t.Errorf("%s saw EXISTS after %v, want within the poll interval %v (+2 s)", B.Name, d, poll)
	}
	from := make([]int, len(c.Nodes))
	for i, n := range c.Nodes {
		from[i] = len(n.Log())
	}
	if err := c.NATS.Restart(); err != nil {
		t.Fatalf("restart nats-server: %v", err)
	}
	for i, n := range c.Nodes {
		line, _, ok := clWaitLog(n, clBusUpLog, from[i], clWait)
		if !ok {
			t.Fatalf("%s: no log line about the bus being up within %v of starting nats-server", n.Name, clWait)
		}
		t.Logf("%s: %s", n.Name, line)
	}
	for i := 2; i <= 4; i++ {
		d := deliver(i, clWait)
		t.Logf("bus up: EXISTS on %s after %v", B.Name, d.Round(100*time.Microsecond))
		if d > clBusLatency {
			t.Errorf("bus up: EXISTS after %v, want within %v", d, clBusLatency)
		}
	}
	w.Done(t)
}
