package mailstore

import (
	"context"
	"database/sql"
	"sync"

	"github.com/bucketmail/bucketmail/internal/metadb"
)

// Prepared statements for the hot queries.
//
// modernc.org/sqlite compiles a query string on every call made through
// DB/Tx.QueryContext; a *sql.Stmt keeps the compiled statement per
// connection and reuses it (about an eighth of the CPU of a mixed IMAP
// load went to compiling). The store keeps one *sql.Stmt per query text,
// prepared on first use, up to maxCachedStmts (queries built from UID
// lists vary; past the limit they are compiled per call as before).
type stmtCache struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// maxCachedStmts bounds the cache (each entry holds one compiled
// statement per pool connection that used it).
const maxCachedStmts = 256

// get returns the prepared statement of query, or nil when the cache is
// full or preparing failed (the caller then runs query unprepared, which
// reports any error).
func (c *stmtCache) get(ctx context.Context, db *sql.DB, query string) *sql.Stmt {
	c.mu.Lock()
	st, ok := c.m[query]
	full := len(c.m) >= maxCachedStmts
	c.mu.Unlock()
	if ok || full {
		return st
	}
	st, err := db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[query]; ok {
		st.Close()
		return old
	}
	if c.m == nil {
		c.m = make(map[string]*sql.Stmt)
	}
	c.m[query] = st
	return st
}

// close closes every cached statement.
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.m {
		st.Close()
		delete(c.m, q)
	}
}

// prepQ is a querier that runs queries through the store's prepared
// statements, on tx if set, else on the DB.
type prepQ struct {
	s  *Store
	tx *sql.Tx
}

// pq wraps q (a *sql.Tx or the store's *sql.DB) so that its queries use
// prepared statements; any other querier is returned as it is. On
// PostgreSQL q is returned as it is: pgx already keeps each query's
// prepared statement per connection (QueryExecModeCacheStatement), and a
// *sql.Stmt would add a prepare round trip per transaction.
func (s *Store) pq(q querier) querier {
	if s.dialect == metadb.Postgres {
		return q
	}
	switch q := q.(type) {
	case *sql.Tx:
		return prepQ{s, q}
	case *sql.DB:
		if q == s.db {
			return prepQ{s, nil}
		}
	}
	return q
}

func (p prepQ) base() querier {
	if p.tx != nil {
		return p.tx
	}
	return p.s.db
}

func (p prepQ) stmt(ctx context.Context, query string) *sql.Stmt {
	st := p.s.stmts.get(ctx, p.s.db, query)
	if st != nil && p.tx != nil {
		// Reuses the statement compiled on tx's connection, if any;
		// closed with tx.
		st = p.tx.StmtContext(ctx, st)
	}
	return st
}

func (p prepQ) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return p.base().QueryContext(ctx, query, args...)
}

func (p prepQ) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return p.base().QueryRowContext(ctx, query, args...)
}

func (p prepQ) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return p.base().ExecContext(ctx, query, args...)
}
