// Package dynamodb is a user database kept in an Amazon DynamoDB table
// (or anything speaking its API, e.g. dynalite in tests), through
// aws-sdk-go-v2.
//
// Table layout: one item per user.
//
//	address     S     partition key (HASH), the address normalised under Options.Policy
//	password    S     Dovecot "{SCHEME}..." hash (userdb/password); missing: no login
//	account     S     mail store key; missing or empty: the address
//	quota_bytes N     bytes, 0 or missing: no limit
//	disabled    BOOL  true: no login; missing: enabled
//
// CreateTable makes such a table (on-demand billing). Any scheme
// password.Verify knows is accepted; new passwords are hashed with
// ARGON2ID unless Options.Hasher says otherwise.
//
// The dsn is "dynamodb://TABLE". Endpoint, region and credentials come
// from the SDK's standard configuration (config.LoadDefaultConfig): the
// endpoint from AWS_ENDPOINT_URL_DYNAMODB, else AWS_ENDPOINT_URL, else
// AWS's own; AWS_REGION; the usual credential chain.
//
// Consistency: reads (Lookup, Authenticate) are eventually consistent by
// default, as DynamoDB's GetItem is, so a password changed on another
// server may take up to about a second to be seen. A call whose context
// carries userdb.WithConsistentRead (or this package's alias
// WithConsistentRead) uses ConsistentRead=true: the hook for the
// cluster's consistency windows (a server that hears on the bus that a
// user changed reads that user consistently for a while).
// Options.ConsistentRead makes every read consistent. ListUsers and the
// writes are always consistent (conditional writes are). Stats counts
// the GetItem reads of each kind.
//
// Errors: any failure to reach the table (network, throttling after the
// retries, a missing table, a server error) gives userdb.ErrUnavailable,
// never ErrAuthFailed or ErrNotFound. Retries: Options.MaxAttempts
// (default 3) with backoff capped at 100 ms, so a login fails fast.
package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/password"
)

// Attribute names.
const (
	AttrAddress  = "address"
	AttrPassword = "password"
	AttrAccount  = "account"
	AttrQuota    = "quota_bytes"
	AttrDisabled = "disabled"
)

// ErrConfig: a bad dsn, or the SDK configuration could not be loaded.
var ErrConfig = errors.New("userdb/dynamodb: bad configuration")

// Options are the settings beyond the dsn. The zero value is the default.
type Options struct {
	// Region overrides AWS_REGION / the shared config's region.
	Region string `toml:"region"`
	// ConsistentRead makes every read strongly consistent (default:
	// eventually consistent unless the call's context says otherwise,
	// see WithConsistentRead).
	ConsistentRead bool `toml:"consistent_read"`
	// MaxAttempts per request including the first (default 3).
	MaxAttempts int `toml:"max_attempts"`
	// Timeout bounds each HTTP attempt (default 5s), so an endpoint
	// that does not answer is ErrUnavailable, not a hung login.
	Timeout time.Duration `toml:"timeout"`
	// Hasher hashes new passwords (default password.Hash, ARGON2ID).
	Hasher password.Hasher `toml:"-"`
	// Policy: how addresses are made canonical (default: the zero
	// userdb.AddressPolicy, lower-cased and NFC); keys hold that form.
	Policy userdb.AddressPolicy `toml:"-"`
}

// DB is a DynamoDB user database. It implements userdb.PassDB,
// userdb.UserDB and userdb.Manager and is safe for concurrent use.
type DB struct {
	client     *dynamodb.Client
	table      string
	consistent bool
	hasher     password.Hasher
	log        *slog.Logger
	check      *password.Checker // verification slots and the dummy hash
	policy     userdb.AddressPolicy

	consistentReads, eventualReads atomic.Int64 // Stats
}

var (
	_ userdb.PassDB  = (*DB)(nil)
	_ userdb.UserDB  = (*DB)(nil)
	_ userdb.Manager = (*DB)(nil)
)

// WithConsistentRead is userdb.WithConsistentRead: under the returned
// context Lookup and Authenticate read with ConsistentRead=true (they see
// every write acknowledged before the read started).
func WithConsistentRead(ctx context.Context) context.Context {
	return userdb.WithConsistentRead(ctx)
}

// Stats count the GetItem reads (Lookup, Authenticate) since Open.
type Stats struct {
	ConsistentReads int64 // ConsistentRead=true
	EventualReads   int64 // eventually consistent
}

// Stats returns the read counters.
func (d *DB) Stats() Stats {
	return Stats{ConsistentReads: d.consistentReads.Load(), EventualReads: d.eventualReads.Load()}
}

// tableName is DynamoDB's rule for table names.
var tableName = regexp.MustCompile(`^[A-Za-z0-9_.-]{3,255}$`)

// ParseDSN returns the table of a "dynamodb://TABLE" dsn.
func ParseDSN(dsn string) (string, error) {
	table, ok := strings.CutPrefix(dsn, "dynamodb://")
	if !ok || !tableName.MatchString(table) {
		return "", fmt.Errorf("%w: dsn %q: want dynamodb://TABLE (3..255 of A-Z a-z 0-9 _ . -)", ErrConfig, dsn)
	}
	return table, nil
}

// Open returns the database for dsn "dynamodb://TABLE" with default
// Options. It does not contact DynamoDB; a table that cannot be reached
// shows as ErrUnavailable on use.
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*DB, error) {
	return OpenOptions(ctx, dsn, Options{}, logger)
}

// OpenOptions is Open with options from the TOML file.
func OpenOptions(ctx context.Context, dsn string, o Options, logger *slog.Logger) (*DB, error) {
	table, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	maxAttempts := o.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = 3
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	loadOpts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTimeout(timeout)),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(s *retry.StandardOptions) {
				s.MaxAttempts = maxAttempts
				s.MaxBackoff = 100 * time.Millisecond
			})
		}),
	}
	if o.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(o.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &DB{
		client:     dynamodb.NewFromConfig(cfg),
		table:      table,
		consistent: o.ConsistentRead,
		hasher:     o.Hasher,
		log:        logger,

		policy: o.Policy,
	}
	if d.hasher == nil {
		d.hasher = password.Hash
	}
	d.check = password.NewChecker(d.hasher)
	return d, nil
}

// Table returns the table name.
func (d *DB) Table() string { return d.table }

// CreateTable creates the table in the layout above (partition key
// address S, on-demand billing) and waits until it is ACTIVE. For
// `bucketmail user` set-up and tests. An existing table is not an error.
func (d *DB) CreateTable(ctx context.Context) error {
	_, err := d.client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(d.table),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(AttrAddress), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(AttrAddress), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fail(ctx, "create table", d.table, err)
	}
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		out, err := d.client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(d.table)})
		if err != nil {
			return fail(ctx, "create table", d.table, err)
		}
		if out.Table.TableStatus == types.TableStatusActive {
			return nil
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return fmt.Errorf("userdb: create table %s: %w", d.table, ctx.Err())
		}
	}
}

// fail wraps an SDK error: the context's own error as is, else
// ErrUnavailable.
func fail(ctx context.Context, op, address string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("userdb: %s %s: %w", op, address, ctxErr)
	}
	return fmt.Errorf("userdb: %s %s: %w: %w", op, address, userdb.ErrUnavailable, err)
}

// storable reports whether address can be a partition key value:
// DynamoDB rejects an empty one or one over 2048 bytes (ValidationException,
// which would read as ErrUnavailable), and JSON would alter invalid UTF-8.
// No user has such an address (userdb.ValidateAddress), so callers answer
// ErrNotFound without asking.
func storable(address string) bool {
	return address != "" && len(address) <= 2048 && utf8.ValidString(address)
}

func key(address string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{AttrAddress: &types.AttributeValueMemberS{Value: address}}
}

// get reads a user and its stored hash ("" if none).
func (d *DB) get(ctx context.Context, address string) (*userdb.User, string, error) {
	if !storable(address) {
		return nil, "", fmt.Errorf("userdb: lookup %s: %w", address, userdb.ErrNotFound)
	}
	consistent := d.consistent || userdb.ConsistentRead(ctx)
	if consistent {
		d.consistentReads.Add(1)
	} else {
		d.eventualReads.Add(1)
	}
	out, err := d.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(d.table),
		Key:            key(address),
		ConsistentRead: aws.Bool(consistent),
	})
	if err != nil {
		return nil, "", fail(ctx, "lookup", address, err)
	}
	if out.Item == nil {
		return nil, "", fmt.Errorf("userdb: lookup %s: %w", address, userdb.ErrNotFound)
	}
	return parse(address, out.Item)
}

// parse makes a User of an item. Besides the documented types it takes
// quota_bytes as S and disabled as N or S ("1", "true"), as tables filled
// by hand often hold them.
func parse(address string, item map[string]types.AttributeValue) (*userdb.User, string, error) {
	u := &userdb.User{Address: address, Account: str(item[AttrAccount])}
	if u.Account == "" {
		u.Account = address
	}
	if q := str(item[AttrQuota]); q != "" {
		n, err := strconv.ParseInt(q, 10, 64)
		if err != nil || n < 0 {
			return nil, "", fmt.Errorf("userdb: lookup %s: bad %s %q", address, AttrQuota, q)
		}
		u.QuotaBytes = n
	}
	switch v := item[AttrDisabled].(type) {
	case *types.AttributeValueMemberBOOL:
		u.Disabled = v.Value
	case *types.AttributeValueMemberN, *types.AttributeValueMemberS:
		switch strings.ToLower(str(v)) {
		case "1", "true", "yes":
			u.Disabled = true
		}
	}
	return u, str(item[AttrPassword]), nil
}

// str returns an S or N attribute's text, "" for others.
func str(v types.AttributeValue) string {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return v.Value
	case *types.AttributeValueMemberN:
		return v.Value
	}
	return ""
}

// Authenticate implements userdb.PassDB. Unknown user, wrong password, a
// missing or unreadable hash and a disabled user are all ErrAuthFailed.
func (d *DB) Authenticate(ctx context.Context, address, pw string) (*userdb.User, error) {
	return userdb.AuthenticateStored(ctx, d.check, d.policy.Normalize(address), pw, d.get)
}

// Lookup implements userdb.UserDB. A disabled user is returned with
// Disabled set; ErrNotFound if there is no item.
func (d *DB) Lookup(ctx context.Context, address string) (*userdb.User, error) {
	u, _, err := d.get(ctx, d.policy.Normalize(address))
	return u, err
}

// AddUser implements userdb.Manager: PutItem with
// attribute_not_exists(address), so a taken address is ErrExists.
func (d *DB) AddUser(ctx context.Context, address, pw string) error {
	address = d.policy.Normalize(address)
	if err := userdb.ValidateAddress(address); err != nil {
		return fmt.Errorf("userdb: add %s: %w", address, err)
	}
	hash, err := d.hasher(pw)
	if err != nil {
		return fmt.Errorf("userdb: add %s: %w", address, err)
	}
	_, err = d.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(d.table),
		Item: map[string]types.AttributeValue{
			AttrAddress:  &types.AttributeValueMemberS{Value: address},
			AttrPassword: &types.AttributeValueMemberS{Value: hash},
			AttrAccount:  &types.AttributeValueMemberS{Value: address},
			AttrQuota:    &types.AttributeValueMemberN{Value: "0"},
			AttrDisabled: &types.AttributeValueMemberBOOL{Value: false},
		},
		ConditionExpression:      aws.String("attribute_not_exists(#a)"),
		ExpressionAttributeNames: map[string]string{"#a": AttrAddress},
	})
	var cond *types.ConditionalCheckFailedException
	if errors.As(err, &cond) {
		return fmt.Errorf("userdb: add %s: %w", address, userdb.ErrExists)
	}
	if err != nil {
		return fail(ctx, "add", address, err)
	}
	return nil
}

// update sets one attribute of an existing user (UpdateItem with
// attribute_exists(address)); ErrNotFound if none.
func (d *DB) update(ctx context.Context, op, address, attr string, v types.AttributeValue) error {
	if !storable(address) {
		return fmt.Errorf("userdb: %s %s: %w", op, address, userdb.ErrNotFound)
	}
	_, err := d.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(d.table),
		Key:                       key(address),
		UpdateExpression:          aws.String("SET #f = :v"),
		ConditionExpression:       aws.String("attribute_exists(#a)"),
		ExpressionAttributeNames:  map[string]string{"#f": attr, "#a": AttrAddress},
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": v},
	})
	var cond *types.ConditionalCheckFailedException
	if errors.As(err, &cond) {
		return fmt.Errorf("userdb: %s %s: %w", op, address, userdb.ErrNotFound)
	}
	if err != nil {
		return fail(ctx, op, address, err)
	}
	return nil
}

// SetPassword implements userdb.Manager.
func (d *DB) SetPassword(ctx context.Context, address, pw string) error {
	address = d.policy.Normalize(address)
	hash, err := d.hasher(pw)
	if err != nil {
		return fmt.Errorf("userdb: passwd %s: %w", address, err)
	}
	return d.update(ctx, "passwd", address, AttrPassword, &types.AttributeValueMemberS{Value: hash})
}

// SetPasswordHash stores an already hashed "{SCHEME}..." password.
// ErrNotFound if no such user.
func (d *DB) SetPasswordHash(ctx context.Context, address, hash string) error {
	return d.update(ctx, "passwd", d.policy.Normalize(address), AttrPassword, &types.AttributeValueMemberS{Value: hash})
}

// SetDisabled enables or disables login. ErrNotFound if no such user.
func (d *DB) SetDisabled(ctx context.Context, address string, disabled bool) error {
	return d.update(ctx, "disable", d.policy.Normalize(address), AttrDisabled, &types.AttributeValueMemberBOOL{Value: disabled})
}

// SetQuota sets the quota in bytes (0: no limit). ErrNotFound if no such user.
func (d *DB) SetQuota(ctx context.Context, address string, bytes int64) error {
	if bytes < 0 {
		return fmt.Errorf("userdb: quota %s: negative quota %d", address, bytes)
	}
	return d.update(ctx, "quota", d.policy.Normalize(address), AttrQuota, &types.AttributeValueMemberN{Value: strconv.FormatInt(bytes, 10)})
}

// DeleteUser implements userdb.Manager (DeleteItem with
// attribute_exists(address)).
func (d *DB) DeleteUser(ctx context.Context, address string) error {
	address = d.policy.Normalize(address)
	if !storable(address) {
		return fmt.Errorf("userdb: delete %s: %w", address, userdb.ErrNotFound)
	}
	_, err := d.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                aws.String(d.table),
		Key:                      key(address),
		ConditionExpression:      aws.String("attribute_exists(#a)"),
		ExpressionAttributeNames: map[string]string{"#a": AttrAddress},
	})
	var cond *types.ConditionalCheckFailedException
	if errors.As(err, &cond) {
		return fmt.Errorf("userdb: delete %s: %w", address, userdb.ErrNotFound)
	}
	if err != nil {
		return fail(ctx, "delete", address, err)
	}
	return nil
}

// ListUsers implements userdb.Manager: a consistent Scan of the whole
// table, sorted by address. Items with a broken quota are logged and
// left out.
func (d *DB) ListUsers(ctx context.Context) ([]userdb.User, error) {
	var out []userdb.User
	p := dynamodb.NewScanPaginator(d.client, &dynamodb.ScanInput{
		TableName:      aws.String(d.table),
		ConsistentRead: aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fail(ctx, "list", "", err)
		}
		for _, item := range page.Items {
			addr := str(item[AttrAddress])
			u, _, err := parse(addr, item)
			if err != nil {
				d.log.Warn("userdb: list: skipping broken item", "table", d.table, "address", addr, "err", err)
				continue
			}
			out = append(out, *u)
		}
	}
	slices.SortFunc(out, func(a, b userdb.User) int { return strings.Compare(a.Address, b.Address) })
	return out, nil
}
