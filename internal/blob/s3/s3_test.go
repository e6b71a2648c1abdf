package s3

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/blob/blobtest"
	"github.com/bucketmail/bucketmail/internal/testutil/s3gw"
)

// testConfig is a config for g with short timeouts.
func testConfig(g *s3gw.Gateway, bucket string) Config {
	return Config{
		Endpoint:       g.Endpoint,
		Region:         g.Region,
		Bucket:         bucket,
		PathStyle:      true,
		FileGateway:    true,
		MultipartPut:   true,
		Credentials:    credentials.NewStaticCredentialsProvider(g.AccessKey, g.SecretKey, ""),
		ConnectTimeout: time.Second,
		IdleTimeout:    5 * time.Second,
		MaxAttempts:    2,
		MaxBackoff:     20 * time.Millisecond,
	}
}

func newTestStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg, err)
	}
	return s
}

var bucketSeq atomic.Int64

func TestConformance(t *testing.T) {
	g := s3gw.Start(t)
	blobtest.Run(t, func(t *testing.T) blob.Store {
		b := g.CreateBucket(fmt.Sprintf("conf-%d", bucketSeq.Add(1)))
		return newTestStore(t, testConfig(g, b))
	})
}

func TestConformancePrefix(t *testing.T) {
	g := s3gw.Start(t)
	blobtest.Run(t, func(t *testing.T) blob.Store {
		cfg := testConfig(g, g.Bucket)
		cfg.Prefix = fmt.Sprintf("p%d/sub", bucketSeq.Add(1))
		return newTestStore(t, cfg)
	})
}
