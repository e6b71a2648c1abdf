package mailstore

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// benchMsg is a typical 4 KB text message.
var benchMsg = testMsg(1)[:strings.Index(testMsg(1), "\r\n\r\n")+4] + strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 70)

// BenchmarkAppend measures Spool + Append of a 4 KB message into one
// mailbox: sequentially, and from several goroutines (as concurrent LMTP
// deliveries do). Each Append is durable (blob fsync + synchronous=FULL
// commits).
func BenchmarkAppend(b *testing.B) {
	run := func(b *testing.B, parallel bool) {
		e := newEnv(b)
		ctx := context.Background()
		a := e.account("bench@example.org")
		one := func() {
			in, err := e.s.Spool(ctx, strings.NewReader(benchMsg), true, 0)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := a.Append(ctx, "INBOX", in, nil, time.Time{}); err != nil {
				b.Fatal(err)
			}
			in.Close()
		}
		b.SetBytes(int64(len(benchMsg)))
		b.ResetTimer()
		if parallel {
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					one()
				}
			})
		} else {
			for b.Loop() {
				one()
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	}
	b.Run("serial", func(b *testing.B) { run(b, false) })
	b.Run("parallel", func(b *testing.B) { run(b, true) })
}

// BenchmarkAppendServers is BenchmarkAppend/parallel with the appends
// spread over three Stores on one metadata database (three servers on
// PostgreSQL, three processes on SQLite), into one mailbox.
func BenchmarkAppendServers(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	stores := append([]*Store{e.s}, e.servers(2)...)
	accts := make([]*Account, len(stores))
	for i, s := range stores {
		a, err := s.Account(ctx, "bench@example.org")
		if err != nil {
			b.Fatal(err)
		}
		accts[i] = a
	}
	var next atomic.Int64
	b.SetBytes(int64(len(benchMsg)))
	b.SetParallelism(6)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)) % len(stores)
		s, a := stores[i], accts[i]
		for pb.Next() {
			in, err := s.Spool(ctx, strings.NewReader(benchMsg), true, 0)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := a.Append(ctx, "INBOX", in, nil, time.Time{}); err != nil {
				b.Error(err)
				return
			}
			in.Close()
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
