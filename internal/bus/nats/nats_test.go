package nats_test

import (
	"testing"
	"time"

	"github.com/bucketmail/bucketmail/internal/bus"
	"github.com/bucketmail/bucketmail/internal/bus/bustest"
	busnats "github.com/bucketmail/bucketmail/internal/bus/nats"
	"github.com/bucketmail/bucketmail/internal/testutil/natsd"
)

func TestConformance(t *testing.T) {
	srv := natsd.Start(t)
	n := 0
	bustest.Run(t, func(t *testing.T) bustest.Harness {
		n++
		subject := "bucketmail.test" + string(rune('a'+n)) // a fresh subject per subtest
		return bustest.Harness{
			MultiNode: true,
			Open: func(t *testing.T, node string) bus.Bus {
				b, err := busnats.Open(t.Context(), busnats.Config{URL: srv.URL, Node: node, Subject: subject, ReconnectWait: 50 * time.Millisecond})
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

func TestOpenInvalid(t *testing.T) {
	if _, err := busnats.Open(t.Context(), busnats.Config{}); err == nil {
		t.Fatal("Open(zero Config) succeeded")
	}
}
