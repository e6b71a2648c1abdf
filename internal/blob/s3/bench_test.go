package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"testing"

	"github.com/bucketmail/bucketmail/internal/blob"
	"github.com/bucketmail/bucketmail/internal/testutil/s3gw"
)

// BenchmarkPutGet measures a Put and a whole-object read of 64 KiB and
// 1 MiB objects against versitygw on loopback (plain http), with the
// SHA-256 known (as mailstore sends it) and computed by the SDK.
func BenchmarkPutGet(b *testing.B) {
	g := s3gw.Start(b)
	ctx := context.Background()
	for _, known := range []bool{false, true} {
		for _, size := range []int{64 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("known-sha256=%v/size=%d", known, size), func(b *testing.B) {
				cfg := testConfig(g, g.Bucket)
				s, err := New(ctx, cfg, nil)
				if err != nil {
					b.Fatal(err)
				}
				data := bytes.Repeat([]byte("x"), size)
				var meta blob.Metadata
				if known {
					sum := sha256.Sum256(data)
					meta = blob.Metadata{MetaSHA256: hex.EncodeToString(sum[:])}
				}
				b.SetBytes(int64(size))
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					key := fmt.Sprintf("bench/%d", i%64)
					if err := s.Put(ctx, key, bytes.NewReader(data), int64(size), meta); err != nil {
						b.Fatal(err)
					}
					r, err := s.NewRangeReader(ctx, key, 0, -1)
					if err != nil {
						b.Fatal(err)
					}
					if n, err := io.Copy(io.Discard, r); err != nil || n != int64(size) {
						b.Fatalf("read %d, %v", n, err)
					}
					r.Close()
				}
			})
		}
	}
}
