// Package blob defines the object store that holds message bodies.
//
// A Store maps keys to immutable objects. Objects are written whole by Put
// and never modified; the only other write is Delete. Implementations:
// blob/fs (local filesystem, the embedded default) and, later, blob/s3.
// blob/blobtest holds the conformance suite every implementation must pass.
//
// Keys are slash-separated ASCII paths: each segment is 1..MaxSegment
// bytes of [A-Za-z0-9._=+-], no segment is "." or "..", no leading or
// trailing slash, at most MaxKeyBytes bytes in all. ValidateKey enforces this; every
// implementation must reject other keys with ErrInvalidKey before touching
// storage, so that no key can escape the store's root.
//
// Key-scheme rule: no key is a prefix of another key followed by "/" (never
// "a" and "a/b" at once). S3-compatible servers that keep objects as files
// (versitygw's posix backend, MinIO on one disk) cannot hold both, and
// ValidateKey cannot see it; every key scheme built on a Store (mailstore's
// "<account>/msg/<ULID>", journals, snapshots) must keep to it, and the
// conformance suite does not test such pairs.
//
// Metadata keys are lower-case ASCII [a-z0-9-]; values are printable ASCII
// (0x20..0x7e). The whole set (keys plus values) must not exceed
// MaxMetadataBytes, the limit S3 puts on user-defined metadata
// (https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingMetadata.html).
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Errors returned by every Store. Implementations wrap them with %w and a
// "blob: op key:" prefix; callers test with errors.Is.
var (
	// ErrNotFound: the object does not exist. Returned by NewRangeReader,
	// Stat and Delete (Delete of a missing key returns ErrNotFound, so
	// callers that do not care test for it), never by the first Read.
	ErrNotFound = errors.New("blob: object not found")
	// ErrInvalidKey: the key breaks the key rules above.
	ErrInvalidKey = errors.New("blob: invalid key")
	// ErrInvalidMetadata: a metadata key or value breaks the rules above, or
	// the set is larger than MaxMetadataBytes.
	ErrInvalidMetadata = errors.New("blob: invalid metadata")
	// ErrSizeMismatch: Put read a different number of bytes than it was told.
	ErrSizeMismatch = errors.New("blob: size mismatch")
	// ErrUnavailable: the store could not be reached or timed out. The
	// operation may succeed if tried again later; delivery turns it into a
	// temporary failure (LMTP 451, IMAP NO [UNAVAILABLE]).
	ErrUnavailable = errors.New("blob: store unavailable")
)

// Key limits. A segment is one byte shorter than the usual file-name limit
// (255) because blob/fs appends a marker byte to object file names.
const (
	MaxKeyBytes = 1024
	MaxSegment  = 254
)

// MaxMetadataBytes is the most user metadata one object may carry, counting
// the bytes of every key and value.
const MaxMetadataBytes = 2048

// Metadata is the user metadata of an object (S3 x-amz-meta-*).
type Metadata map[string]string

// Attrs describes a stored object.
type Attrs struct {
	Key     string
	Size    int64     // bytes
	ModTime time.Time // when the object was written
	Meta    Metadata  // nil from List when the backend does not return it cheaply
}

// Store is an object store. All methods are safe for concurrent use.
type Store interface {
	// Put stores size bytes read from r under key with the given metadata.
	// It is atomic: afterwards the object is there whole and durable, or
	// (on any error) not there at all and a previous object under the key,
	// if any, is unchanged. If r yields more or fewer than size bytes, Put
	// fails with ErrSizeMismatch. Cancelling ctx aborts the write.
	Put(ctx context.Context, key string, r io.Reader, size int64, meta Metadata) error

	// NewRangeReader opens length bytes of the object starting at offset.
	// length < 0 means "to the end". A range past the end is truncated to
	// the object (reading yields io.EOF at once if offset >= size). A
	// missing object gives ErrNotFound from this call, not from Read. The
	// caller must Close the reader.
	NewRangeReader(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)

	// Stat returns the object's size, time and metadata (S3 HeadObject).
	Stat(ctx context.Context, key string) (Attrs, error)

	// Delete removes the object. A missing object gives ErrNotFound.
	Delete(ctx context.Context, key string) error

	// List calls fn for every object whose key starts with prefix, in
	// lexical key order. An error from fn stops the walk and is returned.
	List(ctx context.Context, prefix string, fn func(Attrs) error) error
}

// ValidateKey reports whether key follows the key rules in the package
// doc. The error wraps ErrInvalidKey.
func ValidateKey(key string) error {
	if key == "" || len(key) > MaxKeyBytes {
		return fmt.Errorf("%w: %q: length %d", ErrInvalidKey, key, len(key))
	}
	seg := 0
	for i := 0; i <= len(key); i++ {
		if i == len(key) || key[i] == '/' {
			s := key[seg:i]
			if s == "" || s == "." || s == ".." || len(s) > MaxSegment {
				return fmt.Errorf("%w: %q: bad segment %q", ErrInvalidKey, key, s)
			}
			seg = i + 1
			continue
		}
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == '=', c == '+', c == '-':
		default:
			return fmt.Errorf("%w: %q: byte %#x", ErrInvalidKey, key, c)
		}
	}
	return nil
}

// ValidateMetadata reports whether meta follows the metadata rules in the
// package doc. The error wraps ErrInvalidMetadata.
func ValidateMetadata(meta Metadata) error {
	total := 0
	for k, v := range meta {
		total += len(k) + len(v)
		if k == "" {
			return fmt.Errorf("%w: empty key", ErrInvalidMetadata)
		}
		for i := 0; i < len(k); i++ {
			c := k[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%w: key %q", ErrInvalidMetadata, k)
			}
		}
		for i := 0; i < len(v); i++ {
			if v[i] < 0x20 || v[i] > 0x7e {
				return fmt.Errorf("%w: value of %q: byte %#x", ErrInvalidMetadata, k, v[i])
			}
		}
	}
	if total > MaxMetadataBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidMetadata, total, MaxMetadataBytes)
	}
	return nil
}

// IsTemporary reports whether err is worth retrying later (ErrUnavailable,
// or a context deadline).
func IsTemporary(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
}
