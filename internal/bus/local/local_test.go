package local_test

import (
	"testing"

	"github.com/bucketmail/bucketmail/internal/bus"
	"github.com/bucketmail/bucketmail/internal/bus/bustest"
	"github.com/bucketmail/bucketmail/internal/bus/local"
)

func TestConformance(t *testing.T) {
	bustest.Run(t, func(t *testing.T) bustest.Harness {
		return bustest.Harness{Open: func(t *testing.T, node string) bus.Bus {
			b := local.New(node, nil)
			t.Cleanup(func() { b.Close() })
			return b
		}}
	})
}
