// Package s3 is a blob.Store on an S3-compatible object store
// (aws-sdk-go-v2), tested against versitygw.
//
// Layout: the object for blob key K is "Prefix/K" in the bucket; user
// metadata is sent as x-amz-meta-* headers. Servers that keep objects as
// files (versitygw posix, MinIO on one disk) cannot hold "a" and "a/b" at
// once; blob keys never need that (see the key rules in package blob).
// Operations map to S3 as follows:
//
//	Put            PutObject, streamed from the reader with Content-Length = size
//	NewRangeReader GetObject with "Range: bytes=off-end" (HeadObject for length 0)
//	Stat           HeadObject
//	Delete         HeadObject, then DeleteObject (S3 deletes missing keys silently;
//	               the blob contract wants ErrNotFound, so a Delete racing
//	               another Delete of the same key may both succeed)
//	List           ListObjectsV2, paginated; S3 returns keys in UTF-8 byte
//	               order, which is the lexical order blob.Store promises
//
// Put streaming and payload signing. Each Put is exactly one PutObject
// request (one more per retry). The body is never held in memory: it is
// wrapped to count bytes and hold back the last byte until the reader has
// reported EOF, so a reader that is longer or shorter than size aborts the
// request before the server has a complete body. The server must also be
// able to tell a body cut short (the connection closed mid-body) from a
// whole one: some (versitygw 1.8.0) store whatever part of an unverified
// body arrived. So every body is verified by the server:
//
//   - meta["sha256"] (MetaSHA256) holding 64 hex digits is taken as the
//     SHA-256 of the body and sent as the signed x-amz-content-sha256
//     (the spool file of a delivery: mailstore sets it). The body is read
//     once. A value that does not match makes the server refuse the object
//     (XAmzContentSHA256Mismatch), so a wrong value fails safe.
//   - Otherwise, over https, the body goes aws-chunked with a trailing
//     CRC32 (STREAMING-UNSIGNED-PAYLOAD-TRAILER), streamed in one pass.
//   - Otherwise, over plain http, a seekable reader (io.Seeker: a file, a
//     bytes.Reader) is read twice: once by the SDK to compute the SHA-256
//     that signs the payload, once to send it.
//   - Otherwise (plain http, unseekable reader, no hash) the body is first
//     copied to a temporary file in Config.SpoolDir and then sent signed:
//     the SDK refuses trailing checksums without TLS and cannot sign
//     aws-chunked uploads, so there is no one-pass way to have the server
//     check it.
//
// A Put is retried (5xx, SlowDown, connection errors) only when its body
// is seekable (the caller's reader or the spool); otherwise it is tried
// once.
//
// Limits: S3 caps the request header section at 8 KiB and user metadata
// at 2 KiB (keys plus values). Each x-amz-meta-* header costs its name
// twice (the header and SignedHeaders), so metadata within
// blob.MaxMetadataBytes but spread over many keys can be refused: Put
// then fails with blob.ErrInvalidMetadata (S3 codes MetadataTooLarge,
// RequestHeaderSectionTooLarge). Object names are at most 1024 bytes
// including Prefix.
//
// Metadata values. HTTP trims leading and trailing blanks from header
// values, and the SDK trims what it receives; so a value that is empty,
// starts or ends with a space, contains two spaces in a row or starts with
// "=?" is sent as an RFC 2047 encoded word "=?UTF-8?B?<base64>?=" (the form
// S3 itself uses for non-ASCII values) and decoded on the way back. Other
// values are sent as they are. Encoding makes a value longer: near the
// 2 KiB limit S3 may then refuse the object.
//
// Errors: a missing object is blob.ErrNotFound; connection failures,
// timeouts, HTTP 5xx and throttling (after MaxAttempts tries) are
// blob.ErrUnavailable; a cancelled ctx gives ctx.Err(); other S3 errors
// (AccessDenied, NoSuchBucket, a TLS certificate that does not verify, ...)
// are returned wrapped with the S3 code and are not ErrUnavailable. A GET
// body that fails mid-read fails Read with blob.ErrUnavailable.
//
// Timeouts: Config.ConnectTimeout bounds connects; Config.IdleTimeout
// fails a request whose connection moves no byte while the client waits
// on it (pauses between a caller's Reads do not count); ctx bounds the
// whole call.
package s3

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/bucketmail/bucketmail/internal/blob"
)

// MetaSHA256 is the metadata key whose value, when it is 64 hex digits,
// Put sends as the body's signed SHA-256 (see the package doc).
const MetaSHA256 = "sha256"

// Operations counted by Stats.
var operations = []string{
	"PutObject", "GetObject", "HeadObject", "DeleteObject", "ListObjectsV2", "HeadBucket",
}

// Store is a blob.Store on one bucket (and prefix). Safe for concurrent use.
type Store struct {
	client *s3.Client
	cfg    Config
	prefix string // "" or "p/"
	https  bool
	log    *slog.Logger
	stats  map[string]*opStats // fixed at New: read without a lock

	transport *http.Transport
}

type opStats struct {
	ops, requests, errors atomic.Uint64
}

var _ blob.Store = (*Store)(nil)

// New checks cfg, sets up the client and, unless cfg.SkipBucketCheck,
// sends HeadBucket: an unreachable endpoint gives an error wrapping
// blob.ErrUnavailable, a missing bucket or refused credentials another
// error. Credentials are read here (file) or on the first request (chain).
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		cfg:    cfg,
		prefix: cfg.keyPrefix(),
		log:    logger,
		stats:  make(map[string]*opStats, len(operations)),
		https:  true,
	}
	for _, op := range operations {
		s.stats[op] = &opStats{}
	}
	hc, err := httpClient(cfg)
	if err != nil {
		return nil, err
	}
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(hc),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = cfg.maxAttempts()
				o.MaxBackoff = cfg.maxBackoff()
			})
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	switch {
	case cfg.Credentials != nil:
		opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
	case cfg.CredentialsFile != "":
		cp, err := fileCredentials(ctx, cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, config.WithCredentialsProvider(cp))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS config: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = DefaultRegion
	}
	// Freeze the transport (with $AWS_CA_BUNDLE applied) so that Close can
	// reach its idle connections. Redirects are returned, not followed,
	// as the SDK's own client does.
	if bc, ok := awsCfg.HTTPClient.(*awshttp.BuildableClient); ok {
		s.transport = bc.GetTransport()
		awsCfg.HTTPClient = &http.Client{
			Transport:     s.transport,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	s.client = s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(strings.TrimSuffix(cfg.Endpoint, "/"))
		}
		o.UsePathStyle = cfg.PathStyle
		// Checksums only where the API requires them; Put turns the
		// trailing CRC32 on for https itself. GET ranges cannot be
		// checked.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.APIOptions = append(o.APIOptions, s.countMiddleware)
	})
	// The endpoint may also come from $AWS_ENDPOINT_URL(_S3).
	if ep := s.client.Options().BaseEndpoint; ep != nil {
		s.https = strings.HasPrefix(strings.ToLower(*ep), "https:")
	}
	logger.Info("s3 blob store", "config", cfg.String(), "region", awsCfg.Region, "https", s.https)
	if !cfg.SkipBucketCheck {
		_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(cfg.Bucket)})
		if err != nil {
			return nil, s.fail(ctx, "head bucket", cfg.Bucket, err, false)
		}
	}
	return s, nil
}

// fileCredentials reads static credentials from cfg.CredentialsFile. The
// file wins over the environment: naming a file is explicit.
func fileCredentials(ctx context.Context, cfg Config) (aws.CredentialsProvider, error) {
	profile := cfg.CredentialsProfile
	if profile == "" {
		profile = "default"
	}
	if _, err := os.Stat(cfg.CredentialsFile); err != nil {
		return nil, fmt.Errorf("s3: credentials file: %w", err)
	}
	sc, err := config.LoadSharedConfigProfile(ctx, profile, func(o *config.LoadSharedConfigOptions) {
		o.CredentialsFiles = []string{cfg.CredentialsFile}
		o.ConfigFiles = []string{}
	})
	if err != nil {
		return nil, fmt.Errorf("s3: credentials file %s: %w", cfg.CredentialsFile, err)
	}
	c := sc.Credentials
	if !c.HasKeys() {
		return nil, fmt.Errorf("s3: credentials file %s: profile %q has no aws_access_key_id and aws_secret_access_key", cfg.CredentialsFile, profile)
	}
	return credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken), nil
}

// httpClient builds the client: connect timeout, TLS settings and a
// per-connection idle deadline (see Config.IdleTimeout). It is an SDK
// BuildableClient so that config.LoadDefaultConfig can add the CAs of
// $AWS_CA_BUNDLE (to the system roots and CAFile).
func httpClient(cfg Config) (*awshttp.BuildableClient, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("s3: ca file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("s3: ca file %s: no PEM certificate", cfg.CAFile)
		}
	}
	idle := cfg.idleTimeout()
	dialer := &net.Dialer{Timeout: cfg.connectTimeout(), KeepAlive: 30 * time.Second}
	return awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.Proxy = http.ProxyFromEnvironment
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: c, idle: idle}, nil
		}
		tr.TLSClientConfig = &tls.Config{
			MinVersion:         tls.VersionTLS12,
			RootCAs:            pool,
			InsecureSkipVerify: cfg.InsecureSkipVerify,
		}
		tr.TLSHandshakeTimeout = cfg.connectTimeout()
		tr.ResponseHeaderTimeout = idle
		tr.ExpectContinueTimeout = time.Second
		tr.MaxIdleConns = 100
		tr.MaxIdleConnsPerHost = 100
		tr.IdleConnTimeout = min(90*time.Second, idle)
		// A transparently decompressed GET would not match Content-Length
		// or ranges.
		tr.DisableCompression = true
	}), nil
}

// idleConn extends its deadline on every read and write, so a connection
// that moves no byte for idle fails with a timeout.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	c.Conn.SetDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	c.Conn.SetDeadline(time.Now().Add(c.idle))
	return c.Conn.Write(p)
}

// countMiddleware counts operations, errors (other than not found) and
// HTTP requests (one per attempt) per operation.
func (s *Store) countMiddleware(stack *middleware.Stack) error {
	err := stack.Initialize.Add(middleware.InitializeMiddlewareFunc("bucketmailCountOps",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			st := s.stats[awsmiddleware.GetOperationName(ctx)]
			if st != nil {
				st.ops.Add(1)
			}
			out, md, err := next.HandleInitialize(ctx, in)
			if err != nil && st != nil && !isNotFound(err) {
				st.errors.Add(1)
			}
			return out, md, err
		}), middleware.After)
	if err != nil {
		return err
	}
	return stack.Deserialize.Add(middleware.DeserializeMiddlewareFunc("bucketmailCountRequests",
		func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
			if st := s.stats[awsmiddleware.GetOperationName(ctx)]; st != nil {
				st.requests.Add(1)
			}
			return next.HandleDeserialize(ctx, in)
		}), middleware.After)
}

// Stats returns counters per S3 operation: "<Op>.ops" (calls),
// "<Op>.requests" (HTTP requests, retries included) and "<Op>.errors"
// (calls that failed, not counting a missing object), for Op in
// PutObject, GetObject, HeadObject, DeleteObject, ListObjectsV2,
// HeadBucket.
func (s *Store) Stats() map[string]uint64 {
	m := make(map[string]uint64, 3*len(s.stats))
	for op, st := range s.stats {
		m[op+".ops"] = st.ops.Load()
		m[op+".requests"] = st.requests.Load()
		m[op+".errors"] = st.errors.Load()
	}
	return m
}

// Close closes the store's idle connections. The Store stays usable (it
// connects again when needed); Close only stops it holding sockets.
func (s *Store) Close() error {
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
	return nil
}

// Config returns the store's configuration.
func (s *Store) Config() Config { return s.cfg }

// objectKey is the S3 object name for a blob key.
func (s *Store) objectKey(key string) string { return s.prefix + key }

// Put implements blob.Store. See the package doc for how the body is
// streamed and how the server verifies it.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, meta blob.Metadata) error {
	if err := blob.ValidateKey(key); err != nil {
		return fmt.Errorf("blob: put %s: %w", key, err)
	}
	if err := blob.ValidateMetadata(meta); err != nil {
		return fmt.Errorf("blob: put %s: %w", key, err)
	}
	if size < 0 {
		return fmt.Errorf("blob: put %s: %w: size %d", key, blob.ErrSizeMismatch, size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: put %s: %w", key, err)
	}
	if r == nil {
		r = strings.NewReader("") // as blob/fs: a nil reader is empty
	}
	hash := knownHash(meta)
	body := newSizedReader(ctx, r, size)
	if size == 0 {
		// Nothing to send, but the reader must be empty.
		if _, err := body.Read(make([]byte, 1)); err != io.EOF {
			return fmt.Errorf("blob: put %s: %w", key, err)
		}
		body = newSizedReader(ctx, strings.NewReader(""), 0)
		hash = emptySHA256
	}
	if hash == "" && !s.https && !body.seekable() {
		f, h, err := s.spool(body)
		if err != nil {
			return fmt.Errorf("blob: put %s: %w", key, err)
		}
		defer func() {
			f.Close()
			os.Remove(f.Name())
		}()
		body, hash = newSizedReader(ctx, io.NewSectionReader(f, 0, size), size), h
	}
	var stream io.Reader = body
	if body.seekable() {
		stream = seekableSized{body}
	}
	var optFns []func(*s3.Options)
	if hash != "" {
		// The signed payload hash: the server checks the body against it.
		optFns = append(optFns, s3.WithAPIOptions(func(st *middleware.Stack) error {
			_, err := st.Finalize.Swap(computePayloadHashID, knownPayloadHash(hash))
			return err
		}))
	} else if s.https {
		// A trailing CRC32 computed while streaming (the SDK sends https
		// payloads unsigned).
		optFns = append(optFns, func(o *s3.Options) {
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenSupported
		})
	}
	// else plain http and seekable: the SDK reads the body to sign it.
	if !body.seekable() {
		// A retry would have to send the body again.
		optFns = append(optFns, func(o *s3.Options) { o.Retryer = retry.AddWithMaxAttempts(o.Retryer, 1) })
	}
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.cfg.Bucket),
		Key:           aws.String(s.objectKey(key)),
		Body:          stream,
		ContentLength: aws.Int64(size),
		ContentType:   aws.String("application/octet-stream"),
		Metadata:      encodeMeta(meta),
	}, optFns...)
	if cerr := ctx.Err(); cerr != nil && err != nil {
		return fmt.Errorf("blob: put %s: %w", key, cerr)
	}
	if berr := body.failure(); berr != nil {
		// The reader failed or had the wrong size and the request was cut
		// short; the server could not verify the body and stored nothing.
		return fmt.Errorf("blob: put %s: %w", key, berr)
	}
	if err != nil {
		return s.fail(ctx, "put", key, err, false)
	}
	if n := body.count(); n != size && size != 0 {
		// Cannot happen with net/http (it sends exactly Content-Length
		// bytes); a guard against a transport that stops early.
		return fmt.Errorf("blob: put %s: %w: sent %d of %d bytes", key, blob.ErrSizeMismatch, n, size)
	}
	return nil
}

// emptySHA256 is the SHA-256 of no bytes, in hex.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// computePayloadHashID is the SDK's SigV4 middleware that sets the
// payload hash (aws/signer/v4); Put swaps it when the hash is known.
const computePayloadHashID = "ComputePayloadHash"

// knownHash returns meta[MetaSHA256] in lower case when it is 64 hex
// digits, else "".
func knownHash(meta blob.Metadata) string {
	h := strings.ToLower(meta[MetaSHA256])
	if len(h) != 64 {
		return ""
	}
	if _, err := hex.DecodeString(h); err != nil {
		return ""
	}
	return h
}

// knownPayloadHash is a Finalize middleware that sets the SigV4 payload
// hash to a value known in advance, in place of the SDK's.
type knownPayloadHash string

func (knownPayloadHash) ID() string { return computePayloadHashID }

func (h knownPayloadHash) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
	return next.HandleFinalize(v4.SetPayloadHash(ctx, string(h)), in)
}

// spool copies body (a sizedReader: it checks the size and ctx) to a
// temporary file in Config.SpoolDir and returns the file and the body's
// SHA-256 in hex. The caller closes and removes the file.
func (s *Store) spool(body *sizedReader) (*os.File, string, error) {
	f, err := os.CreateTemp(s.cfg.SpoolDir, "bucketmail-s3-put-*")
	if err != nil {
		return nil, "", fmt.Errorf("spool: %w", err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), body); err != nil {
		f.Close()
		os.Remove(f.Name())
		if berr := body.failure(); berr != nil {
			return nil, "", berr
		}
		return nil, "", fmt.Errorf("spool: %w", err)
	}
	return f, hex.EncodeToString(h.Sum(nil)), nil
}

// NewRangeReader implements blob.Store.
func (s *Store) NewRangeReader(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := blob.ValidateKey(key); err != nil {
		return nil, fmt.Errorf("blob: read %s: %w", key, err)
	}
	if offset < 0 {
		return nil, fmt.Errorf("blob: read %s: negative offset %d", key, offset)
	}
	if length == 0 {
		if _, err := s.head(ctx, "read", key); err != nil {
			return nil, err
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	in := &s3.GetObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(s.objectKey(key)),
	}
	ranged := offset > 0 || length > 0
	if ranged {
		if length > 0 {
			in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
		} else {
			in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
		}
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		var re *awshttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusRequestedRangeNotSatisfiable {
			// The object exists and offset is at or past its end.
			return io.NopCloser(strings.NewReader("")), nil
		}
		return nil, s.fail(ctx, "read", key, err, true)
	}
	var rc io.ReadCloser = &getReader{body: out.Body, key: key}
	if ranged && out.ContentRange == nil {
		// The server ignored the range and sent the whole object.
		if _, err := io.CopyN(io.Discard, rc, offset); err != nil && err != io.EOF {
			rc.Close()
			return nil, err
		}
		if length > 0 {
			rc = struct {
				io.Reader
				io.Closer
			}{io.LimitReader(rc, length), rc}
		}
	}
	return rc, nil
}

// getReader maps errors from a GET body: anything but io.EOF means the
// connection failed, so it wraps blob.ErrUnavailable.
type getReader struct {
	body io.ReadCloser
	key  string
}

func (g *getReader) Read(p []byte) (int, error) {
	n, err := g.body.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("blob: read %s: %w: %w", g.key, blob.ErrUnavailable, err)
	}
	return n, err
}

func (g *getReader) Close() error { return g.body.Close() }

// Stat implements blob.Store.
func (s *Store) Stat(ctx context.Context, key string) (blob.Attrs, error) {
	return s.head(ctx, "stat", key)
}

func (s *Store) head(ctx context.Context, op, key string) (blob.Attrs, error) {
	if err := blob.ValidateKey(key); err != nil {
		return blob.Attrs{}, fmt.Errorf("blob: %s %s: %w", op, key, err)
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(s.objectKey(key)),
	})
	if err != nil {
		return blob.Attrs{}, s.fail(ctx, op, key, err, true)
	}
	a := blob.Attrs{Key: key, Size: aws.ToInt64(out.ContentLength), Meta: decodeMeta(out.Metadata)}
	if out.LastModified != nil {
		a.ModTime = *out.LastModified
	}
	return a, nil
}

// Delete implements blob.Store: HeadObject (for ErrNotFound), then
// DeleteObject.
func (s *Store) Delete(ctx context.Context, key string) error {
	if _, err := s.head(ctx, "delete", key); err != nil {
		return err
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(s.objectKey(key)),
	})
	if err != nil {
		return s.fail(ctx, "delete", key, err, false)
	}
	return nil
}

// List implements blob.Store. Objects under the prefix whose names are
// not valid blob keys (written by something else) are skipped. Meta is
// nil: ListObjectsV2 does not return it.
func (s *Store) List(ctx context.Context, prefix string, fn func(blob.Attrs) error) error {
	if !viablePrefix(prefix) {
		return nil // no valid key starts with it
	}
	in := &s3.ListObjectsV2Input{
		Bucket: aws.String(s.cfg.Bucket),
		Prefix: aws.String(s.prefix + prefix),
	}
	p := s3.NewListObjectsV2Paginator(s.client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return s.fail(ctx, "list", prefix, err, false)
		}
		for _, o := range page.Contents {
			name := aws.ToString(o.Key)
			key, ok := strings.CutPrefix(name, s.prefix)
			if !ok || blob.ValidateKey(key) != nil {
				s.log.Debug("s3: list: skipping foreign object", "object", name)
				continue
			}
			a := blob.Attrs{Key: key, Size: aws.ToInt64(o.Size)}
			if o.LastModified != nil {
				a.ModTime = *o.LastModified
			}
			if err := fn(a); err != nil {
				return err
			}
		}
	}
	return nil
}

// viablePrefix reports whether some valid key starts with p.
func viablePrefix(p string) bool {
	return p == "" || blob.ValidateKey(p) == nil || blob.ValidateKey(p+"x") == nil
}

// fail turns an SDK error into the blob error contract. notFound says
// whether a 404 means the object is missing (object reads) rather than a
// missing bucket.
func (s *Store) fail(ctx context.Context, op, key string, err error, notFound bool) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("blob: %s %s: %w", op, key, cerr)
	}
	if notFound && isNotFound(err) {
		return fmt.Errorf("blob: %s %s: %w", op, key, blob.ErrNotFound)
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "MetadataTooLarge", "RequestHeaderSectionTooLarge":
			// Within blob.MaxMetadataBytes but too much for S3: each
			// x-amz-meta-* header costs its name twice (header and
			// SignedHeaders) against S3's 8 KiB request header limit.
			return fmt.Errorf("blob: %s %s: %w: %w", op, key, blob.ErrInvalidMetadata, err)
		}
	}
	if isUnavailable(err) {
		return fmt.Errorf("blob: %s %s: %w: %w", op, key, blob.ErrUnavailable, err)
	}
	return fmt.Errorf("blob: %s %s: %w", op, key, err)
}

// isNotFound: S3 says the key does not exist (GetObject NoSuchKey,
// HeadObject 404 NotFound, which has no body to tell a missing bucket
// from a missing key).
func isNotFound(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return true
		}
	}
	return false
}

// isUnavailable: the request did not get through, timed out, or the
// server failed or throttled.
func isUnavailable(err error) bool {
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() != 0 { // 0: no response, see below
		code := re.HTTPStatusCode()
		return code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout
	}
	var se *smithyhttp.RequestSendError
	var ne net.Error
	var ae smithy.APIError
	var ce *tls.CertificateVerificationError
	switch {
	case errors.As(err, &ce):
		return false // configuration, not weather
	case errors.As(err, &se), errors.As(err, &ne):
		return true
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, os.ErrDeadlineExceeded):
		return true
	case errors.As(err, &ae):
		switch ae.ErrorCode() {
		case "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling", "ThrottlingException":
			return true
		}
	}
	return false
}

// Encoded-word form of metadata values (see the package doc).
const (
	encPrefix = "=?UTF-8?B?"
	encSuffix = "?="
)

func encodeMeta(meta blob.Metadata) map[string]string {
	if len(meta) == 0 {
		return nil
	}
	out := make(map[string]string, len(meta))
	for k, v := range meta {
		if v == "" || v[0] == ' ' || v[len(v)-1] == ' ' || strings.Contains(v, "  ") || strings.HasPrefix(v, "=?") {
			v = encPrefix + base64.StdEncoding.EncodeToString([]byte(v)) + encSuffix
		}
		out[k] = v
	}
	return out
}

func decodeMeta(m map[string]string) blob.Metadata {
	if len(m) == 0 {
		return nil
	}
	out := make(blob.Metadata, len(m))
	for k, v := range m {
		if inner, ok := strings.CutPrefix(v, encPrefix); ok {
			if inner, ok = strings.CutSuffix(inner, encSuffix); ok {
				if b, err := base64.StdEncoding.DecodeString(inner); err == nil {
					v = string(b)
				}
			}
		}
		out[k] = v
	}
	return out
}

// sizedReader passes size bytes through and fails the request when the
// underlying reader has more or fewer. It never hands out the last byte
// before the reader has reported EOF, so a too-long body can never reach
// the server complete. Errors stick. When the underlying reader is an
// io.Seeker, so is sizedReader (the SDK rewinds it to retry), unless it
// has failed. The mutex guards against the transport still reading while
// the SDK rewinds for a retry.
type sizedReader struct {
	mu    sync.Mutex
	ctx   context.Context // a cancelled ctx fails the next Read
	r     io.Reader
	size  int64
	left  int64 // bytes still to hand out
	done  bool  // all size bytes handed out and EOF seen
	empty int   // empty reads in a row
	err   error // sticky failure: blob.ErrSizeMismatch or the reader's error
	start int64 // position of the underlying seeker at creation; -1 if not seekable
}

func newSizedReader(ctx context.Context, r io.Reader, size int64) *sizedReader {
	s := &sizedReader{ctx: ctx, r: r, size: size, left: size, start: -1}
	if sk, ok := r.(io.Seeker); ok {
		if pos, err := sk.Seek(0, io.SeekCurrent); err == nil {
			s.start = pos
		}
	}
	return s
}

func (s *sizedReader) seekable() bool { return s.start >= 0 }

func (s *sizedReader) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *sizedReader) count() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size - s.left
}

func (s *sizedReader) fail(err error) error {
	if err == nil || err == io.EOF {
		err = blob.ErrSizeMismatch
	}
	if errors.Is(err, blob.ErrSizeMismatch) {
		err = fmt.Errorf("%w: want %d bytes", blob.ErrSizeMismatch, s.size)
	}
	s.err = err
	return err
}

func (s *sizedReader) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil && s.ctx.Err() != nil {
		s.err = s.ctx.Err()
	}
	switch {
	case s.err != nil:
		return 0, s.err
	case s.done:
		return 0, io.EOF
	case len(p) == 0:
		return 0, nil
	case s.left == 0:
		// size 0: the reader must be at EOF.
		var b [1]byte
		n, err := readFull(s.r, b[:])
		if n > 0 {
			return 0, s.fail(nil)
		}
		if err == io.EOF {
			s.done = true
			return 0, io.EOF
		}
		return 0, s.fail(err)
	case s.left > 1:
		q := p
		if int64(len(q)) > s.left-1 {
			q = q[:s.left-1]
		}
		n, err := s.r.Read(q)
		s.left -= int64(n)
		if err == io.EOF {
			return n, s.fail(nil) // short
		}
		if err != nil {
			return n, s.fail(err)
		}
		if n > 0 {
			s.empty = 0
		} else if s.empty++; s.empty == 100 {
			return 0, s.fail(io.ErrNoProgress)
		}
		return n, nil
	}
	// The last byte: read it and make sure nothing follows.
	var b [2]byte
	n, err := readFull(s.r, b[:])
	switch {
	case n == 2:
		return 0, s.fail(nil) // long
	case n == 1 && err == io.ErrUnexpectedEOF:
		p[0] = b[0]
		s.left = 0
		s.done = true
		return 1, nil
	case err == io.EOF:
		return 0, s.fail(nil) // short
	default:
		return 0, s.fail(err)
	}
}

// readFull is io.ReadFull that gives up with io.ErrNoProgress after 100
// empty reads in a row.
func readFull(r io.Reader, p []byte) (int, error) {
	n, empty := 0, 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err != nil {
			if err == io.EOF && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		if m > 0 {
			empty = 0
		} else if empty++; empty == 100 {
			return n, io.ErrNoProgress
		}
	}
	return n, nil
}

// seekableSized is a sizedReader on an io.Seeker, which the SDK can rewind
// to retry. A plain sizedReader has no Seek method, so the SDK knows it
// cannot.
type seekableSized struct{ *sizedReader }

// Seek supports what the SDK needs: Seek(0, io.SeekCurrent) to learn the
// start, Seek(0, io.SeekEnd) to learn the length and Seek(start,
// io.SeekStart) to rewind for a retry. The end is start+size, whatever
// the underlying reader holds.
func (s seekableSized) Seek(offset int64, whence int) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.start < 0 {
		return 0, errors.New("s3: body is not seekable")
	}
	if s.err != nil {
		return 0, s.err // a failed body is not sent again
	}
	pos := s.start + s.size - s.left
	switch whence {
	case io.SeekCurrent:
		if offset == 0 {
			return pos, nil
		}
		offset += pos
	case io.SeekStart:
	case io.SeekEnd: // the SDK measures the length this way
		offset += s.start + s.size
	default:
		return 0, fmt.Errorf("s3: body seek whence %d unsupported", whence)
	}
	if offset < s.start || offset > s.start+s.size {
		return 0, fmt.Errorf("s3: body seek to %d outside [%d, %d]", offset, s.start, s.start+s.size)
	}
	if _, err := s.r.(io.Seeker).Seek(offset, io.SeekStart); err != nil {
		return 0, err
	}
	s.left = s.size - (offset - s.start)
	s.done = false
	return offset, nil
}
