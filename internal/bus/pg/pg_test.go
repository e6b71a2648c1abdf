package pg_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/bus"
	"github.com/bucketmail/bucketmail/internal/bus/bustest"
	buspg "github.com/bucketmail/bucketmail/internal/bus/pg"
	"github.com/bucketmail/bucketmail/internal/testutil/pgsrv"
)

func TestConformance(t *testing.T) {
	srv := pgsrv.Start(t)
	n := 0
	bustest.Run(t, func(t *testing.T) bustest.Harness {
		n++
		channel := fmt.Sprintf("bucketmail_test_%d", n) // a fresh channel per subtest
		return bustest.Harness{
			MultiNode: true,
			Open: func(t *testing.T, node string) bus.Bus {
				b, err := buspg.Open(t.Context(), buspg.Config{URL: srv.URL("postgres"), Node: node, Channel: channel, RetryWait: 50 * time.Millisecond,
					PingInterval: 30 * time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { b.Close() })
				return b
			},
			Stop: func(t *testing.T) { srv.Stop() },
			Start: func(t *testing.T) {
				if err := srv.Restart(); err != nil {
					t.Fatal(err)
				}
			},
		}
	})
}

func TestConfigValidate(t *testing.T) {
	err := buspg.Config{URL: "postgres://%zz"}.Validate()
	if !errors.Is(err, bus.ErrInvalid) {
		t.Fatalf("Validate = %v, want ErrInvalid", err)
	}
	if got := len(err.(interface{ Unwrap() []error }).Unwrap()); got != 2 {
		t.Fatalf("Validate reported %d problems (%v), want 2 (URL, node)", got, err)
	}
}
