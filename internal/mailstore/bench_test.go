package mailstore

import (
	"context"
	"strings"
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
