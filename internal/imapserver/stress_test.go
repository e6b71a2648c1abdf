package imapserver

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// seqModel is a client's view of the selected mailbox: UID by sequence
// number (0 = not learned yet), maintained only from EXISTS and EXPUNGE
// as RFC 3501 §7.4.1 says a client must.
type seqModel struct {
	uids                     []uint32
	exists, expunges, fetchs int
}

var (
	reExists  = regexp.MustCompile(`^\* (\d+) EXISTS$`)
	reExpunge = regexp.MustCompile(`^\* (\d+) EXPUNGE$`)
	reFetch   = regexp.MustCompile(`^\* (\d+) FETCH \(UID (\d+)[ )]`)
)

// apply updates the model from one untagged line; it reports a protocol
// violation as an error.
func (m *seqModel) apply(line string, inSeqCommand bool) error {
	if g := reExists.FindStringSubmatch(line); g != nil {
		n, _ := strconv.Atoi(g[1])
		if n < len(m.uids) {
			return fmt.Errorf("EXISTS %d below known count %d: %q", n, len(m.uids), line)
		}
		for len(m.uids) < n {
			m.uids = append(m.uids, 0)
		}
		m.exists++
		return nil
	}
	if g := reExpunge.FindStringSubmatch(line); g != nil {
		if inSeqCommand {
			return fmt.Errorf("EXPUNGE during FETCH/STORE/SEARCH: %q", line)
		}
		n, _ := strconv.Atoi(g[1])
		if n < 1 || n > len(m.uids) {
			return fmt.Errorf("EXPUNGE %d of %d: %q", n, len(m.uids), line)
		}
		m.uids = append(m.uids[:n-1], m.uids[n:]...)
		m.expunges++
		return nil
	}
	if g := reFetch.FindStringSubmatch(line); g != nil {
		n, _ := strconv.Atoi(g[1])
		u, _ := strconv.ParseUint(g[2], 10, 32)
		if n < 1 || n > len(m.uids) {
			return fmt.Errorf("FETCH for %d of %d: %q", n, len(m.uids), line)
		}
		if m.uids[n-1] != 0 && m.uids[n-1] != uint32(u) {
			return fmt.Errorf("seq %d was UID %d, now UID %d: %q", n, m.uids[n-1], u, line)
		}
		m.uids[n-1] = uint32(u)
		m.fetchs++
	}
	return nil
}

// TestConcurrentSessionsSeqConsistency runs writers (APPEND, STORE,
// EXPUNGE, MOVE) against readers that track sequence numbers from the
// untagged responses only, and checks that the server's numbering never
// disagrees with what it told each reader, that UIDs ascend with
// sequence numbers, and that no EXPUNGE comes during FETCH, STORE or
// SEARCH.
func TestConcurrentSessionsSeqConsistency(t *testing.T) {
	env := newTestEnv(t, nil)
	dur := 2 * time.Second
	if testing.Short() {
		dur = 500 * time.Millisecond
	}
	stop := time.Now().Add(dur)
	var wg sync.WaitGroup
	errs := make(chan error, 16)

	var writers, readers []*rawClient
	for range 3 {
		writers = append(writers, dialRaw(t, env.addr))
	}
	for range 2 {
		readers = append(readers, dialRaw(t, env.addr))
	}
	for w, c := range writers {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			tag := 0
			failed := false
			cmd := func(s string) {
				tag++
				tg := fmt.Sprintf("w%d", tag)
				if _, err := c.nc.Write([]byte(tg + " " + s + "\r\n")); err != nil {
					errs <- err
					failed = true
					return
				}
				for {
					l, err := c.readLine()
					if err != nil {
						errs <- fmt.Errorf("writer %d: %q: %v", w, s, err)
						failed = true
						return
					}
					if strings.HasPrefix(l, tg+" ") {
						if !strings.HasPrefix(l, tg+" OK") {
							errs <- fmt.Errorf("writer %d: %q → %q", w, s, l)
							failed = true
						}
						return
					}
				}
			}
			cmd("LOGIN alice secret")
			cmd("SELECT INBOX")
			for !failed && time.Now().Before(stop) {
				switch r.IntN(5) {
				case 0, 1:
					cmd("APPEND INBOX {18+}\r\nSubject: s\r\n\r\nbody")
				case 2:
					cmd("UID STORE 1:* +FLAGS.SILENT (\\Deleted)")
					cmd("UID EXPUNGE " + strconv.Itoa(1+r.IntN(40)) + ":*")
				case 3:
					cmd("UID MOVE " + strconv.Itoa(1+r.IntN(40)) + " Trash")
				case 4:
					cmd("UID STORE " + strconv.Itoa(1+r.IntN(40)) + ":* FLAGS (\\Seen)")
				}
			}
		}(w)
	}
	for rd, c := range readers {
		wg.Add(1)
		go func(rd int) {
			defer wg.Done()
			m := &seqModel{}
			tag := 0
			cmd := func(s string, seqCmd bool) bool {
				tag++
				tg := fmt.Sprintf("r%d", tag)
				if _, err := c.nc.Write([]byte(tg + " " + s + "\r\n")); err != nil {
					errs <- err
					return false
				}
				for {
					l, err := c.readLine()
					if err != nil {
						errs <- fmt.Errorf("reader %d: %q: %v", rd, s, err)
						return false
					}
					if strings.HasPrefix(l, tg+" ") {
						if !strings.HasPrefix(l, tg+" OK") {
							errs <- fmt.Errorf("reader %d: %q → %q", rd, s, l)
							return false
						}
						return true
					}
					if err := m.apply(l, seqCmd); err != nil {
						errs <- fmt.Errorf("reader %d after %q: %v", rd, s, err)
						return false
					}
				}
			}
			if !cmd("LOGIN alice secret", false) || !cmd("SELECT INBOX", false) {
				return
			}
			for i := 0; time.Now().Before(stop); i++ {
				var ok bool
				switch {
				case len(m.uids) > 0 && i%3 == 0:
					ok = cmd("FETCH 1:* (UID FLAGS)", true)
				case len(m.uids) > 0 && i%3 == 1:
					ok = cmd("STORE "+strconv.Itoa(len(m.uids))+" +FLAGS (\\Flagged)", true)
				case i%5 == 2:
					ok = cmd("SEARCH ALL", true)
				default:
					ok = cmd("NOOP", false)
				}
				if !ok {
					return
				}
				for k := 1; k < len(m.uids); k++ {
					if m.uids[k-1] != 0 && m.uids[k] != 0 && m.uids[k-1] >= m.uids[k] {
						errs <- fmt.Errorf("reader %d: UIDs not ascending at %d: %v", rd, k, m.uids)
						return
					}
				}
			}
			// Finally every number the reader holds must name the UID
			// the server has for it.
			if cmd("NOOP", false) && len(m.uids) > 0 {
				cmd("FETCH 1:* UID", true)
			}
			t.Logf("reader %d: %d commands, %d EXISTS, %d EXPUNGE, %d FETCH checked, %d messages at the end",
				rd, tag, m.exists, m.expunges, m.fetchs, len(m.uids))
			if m.expunges == 0 || m.exists == 0 {
				errs <- fmt.Errorf("reader %d saw no EXISTS or no EXPUNGE: the test tested nothing", rd)
			}
		}(rd)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
