package e2e

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/journal"
	"github.com/bucketmail/bucketmail/internal/testutil/cluster"
	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

// TestClusterUserDelDuringDeliveries: deliveries to an account run
// through servers B and C while `bucketmail user del` runs through A.
// Afterwards nothing of the account remains: no account, mailbox or
// message row in the metadata database, and no object under its key
// prefix in the bucket; deliveries after the deletion are refused.
func TestClusterUserDelDuringDeliveries(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: 3})
	clRequireShared(t, c)
	const acct, pw = "gone@example.org", "cluster-gone-1"
	c.AddUser(t, acct, pw)
	A := c.Nodes[0]
	var (
		accepted atomic.Int32
		refused  atomic.Int32
		stop     atomic.Bool
		mu       sync.Mutex
		afterDel []string
		deleted  atomic.Bool
	)
	waitSenders := clSenders(t, 4, func(w int) *cluster.Node { return c.Nodes[1+w%2] }, func(w int, node *cluster.Node, lc *e2e.LMTPClient) {
		for i := 0; !stop.Load() && i < 400; i++ {
			started := deleted.Load()
			err := lc.Deliver1(sender, acct, clMessage(fmt.Sprintf("gone%d-%03d", w, i), 20000))
			if err == nil {
				accepted.Add(1)
				if started {
					mu.Lock()
					afterDel = append(afterDel, fmt.Sprintf("%s: gone%d-%03d", node.Name, w, i))
					mu.Unlock()
				}
			} else {
				refused.Add(1)
			}
		}
	})
	// objects lists the bucket's keys (versitygw's posix directory)
	// under the account's prefix.
	objects := func() []string {
		var keys []string
		root := filepath.Join(c.S3.Dir, c.S3.Bucket)
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if strings.HasPrefix(filepath.ToSlash(rel), journal.AccountPrefix(acct)) {
				keys = append(keys, rel)
			}
			return nil
		})
		return keys
	}
	time.Sleep(1500 * time.Millisecond)
	if n := len(objects()); n == 0 {
		t.Fatalf("no object under %s in the bucket before user del (key layout changed?)", journal.AccountPrefix(acct))
	} else {
		t.Logf("%d objects under %s before user del", n, journal.AccountPrefix(acct))
	}
	out := A.Run(t, "", "user", "del", acct)
	deleted.Store(true)
	t.Logf("user del: %s", out)
	time.Sleep(1500 * time.Millisecond)
	stop.Store(true)
	waitSenders()
	t.Logf("deliveries: %d accepted, %d refused", accepted.Load(), refused.Load())
	if refused.Load() == 0 {
		t.Errorf("no delivery was refused after user del")
	}
	for _, d := range afterDel {
		t.Errorf("accepted after user del had returned: %s", d)
	}
	if got := c.Psql(t, `SELECT (SELECT count(*) FROM accounts) || ' ' || (SELECT count(*) FROM mailboxes) || ' ' || (SELECT count(*) FROM messages) || ' ' || (SELECT count(*) FROM blobs)`); got != "0 0 0 0" {
		t.Errorf("metadata after user del: accounts, mailboxes, messages, blobs = %s, want 0 0 0 0", got)
	}
	// fsck only looks under accounts the index knows: look in the bucket
	// for anything left under the account's prefix.
	if left := objects(); len(left) > 0 {
		t.Errorf("bucket after user del: %d objects left under %s, e.g. %v", len(left), journal.AccountPrefix(acct), left[:min(5, len(left))])
	}
}
