package mailstore

import (
	"context"
	"sync"
	"time"
)

// Background deletes.
//
// EXPUNGE answers once its transaction has committed; the objects whose
// last reference it dropped are deleted afterwards by deleteWorkers
// goroutines (an S3 DELETE, or an unlink and a directory fsync, took as
// long as the rest of the command). Until then an object is an orphan
// that no index row points at: a crash leaves it for fsck, as a failed
// delete always did. A full queue (more than delQueue batches waiting)
// makes the caller delete its own objects, so a burst cannot grow memory
// without bound. Close waits for the queue to drain (up to
// closeDeletesWait).
const (
	deleteWorkers    = 2
	delQueue         = 1024
	closeDeletesWait = 10 * time.Second
)

type deleter struct {
	mu      sync.Mutex
	closed  bool
	started bool
	q       chan []string
	pending sync.WaitGroup // batches queued or being deleted
	workers sync.WaitGroup
}

// deleteLater deletes keys in the background (see above).
func (s *Store) deleteLater(keys []string) {
	if len(keys) == 0 {
		return
	}
	d := &s.del
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		s.deleteBlobs(context.Background(), keys)
		return
	}
	if !d.started {
		d.started = true
		d.q = make(chan []string, delQueue)
		for range deleteWorkers {
			d.workers.Add(1)
			go func() {
				defer d.workers.Done()
				for keys := range d.q {
					s.deleteBlobs(context.Background(), keys)
					d.pending.Done()
				}
			}()
		}
	}
	d.pending.Add(1)
	select {
	case d.q <- keys:
		d.mu.Unlock()
	default:
		d.mu.Unlock()
		s.deleteBlobs(context.Background(), keys)
		d.pending.Done()
	}
}

// waitDeletes returns once every object queued so far is deleted (or its
// delete failed and was logged).
func (s *Store) waitDeletes() { s.del.pending.Wait() }

// closeDeleter drains the queue, waiting up to closeDeletesWait (a
// stalled bucket must not hold the shutdown; what is left are orphans for
// fsck), and stops the workers; later deletes run in the caller. A second
// call does nothing.
func (s *Store) closeDeleter() {
	d := &s.del
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	started := d.started
	d.mu.Unlock()
	if !started {
		return
	}
	close(d.q)
	done := make(chan struct{})
	go func() {
		d.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeDeletesWait):
		s.log.Warn("mailstore: close: objects of expunged messages still being deleted; the rest are left for fsck",
			"waited", closeDeletesWait)
	}
}
