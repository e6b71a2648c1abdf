package metadb

// MailMigrations is the schema of the mail store (component "mail"), one
// entry per version. Append new versions; never edit an applied one.
//
// Tables (times are Unix seconds, UTC):
//
//	accounts       one row per account; next_uidvalidity is the
//	               per-account UIDVALIDITY counter, seeded with the time of
//	               creation, so a mailbox deleted and created again (or
//	               renamed away and created again) gets a new UIDVALIDITY.
//	counters       named global counters. "uidvalidity-floor": when an
//	               account is deleted its UIDVALIDITY counter is kept here,
//	               and a new account starts above it, so an account deleted
//	               and created again within a second never repeats a
//	               UIDVALIDITY.
//	mailboxes      id is AUTOINCREMENT: an id is never reused, so a
//	               session holding an id of a deleted mailbox finds
//	               nothing. uidnext never goes down; highestmodseq is the
//	               largest MODSEQ given out in the mailbox (starts at 1).
//	subscriptions  subscribed names; need not exist (RFC 3501 §6.3.6).
//	keywords       the account's keywords in the case first written,
//	               keyed by their lower-case form (flags compare
//	               case-insensitively).
//	blobs          one row per message object with the number of message
//	               rows that point at it (COPY shares an object). The
//	               object is deleted after the transaction that drops refs
//	               to 0 commits.
//	messages       one row per message in a mailbox. flags is a bit field
//	               of system flags (1 \Seen, 2 \Answered, 4 \Flagged,
//	               8 \Deleted, 16 \Draft); keywords is a space-separated,
//	               sorted list of keyword names. internal_date + internal_tz
//	               (offset east of UTC, seconds) give INTERNALDATE.
//	               envelope/bodystructure/body are IMAP-encoded; structure
//	               is mime.EncodeStructure; header is the top-level raw
//	               header. subject..message_id are decoded header values
//	               (mime.DecodeHeaderValue) for SEARCH and SORT; date is
//	               the Date: header as Unix time (NULL if unparsable).
//	expunged       (mailbox, uid, modseq of the expunge), kept for as long
//	               as the mailbox exists, for QRESYNC VANISHED.
var MailMigrations = []string{
	// 1: initial schema.
	`
CREATE TABLE accounts (
	id               INTEGER PRIMARY KEY AUTOINCREMENT,
	name             TEXT NOT NULL UNIQUE,
	next_uidvalidity INTEGER NOT NULL,
	created          INTEGER NOT NULL
);
CREATE TABLE counters (
	name  TEXT PRIMARY KEY,
	value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE mailboxes (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	account_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	guid          TEXT NOT NULL UNIQUE,
	name          TEXT NOT NULL,
	uidvalidity   INTEGER NOT NULL,
	uidnext       INTEGER NOT NULL,
	highestmodseq INTEGER NOT NULL,
	special_use   TEXT NOT NULL DEFAULT '',
	created       INTEGER NOT NULL,
	UNIQUE (account_id, name)
);
CREATE TABLE subscriptions (
	account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	name       TEXT NOT NULL,
	PRIMARY KEY (account_id, name)
) WITHOUT ROWID;
CREATE TABLE keywords (
	account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	lname      TEXT NOT NULL,
	name       TEXT NOT NULL,
	PRIMARY KEY (account_id, lname)
) WITHOUT ROWID;
CREATE TABLE blobs (
	key        TEXT PRIMARY KEY,
	account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	refs       INTEGER NOT NULL,
	size       INTEGER NOT NULL,
	sha256     BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX blobs_account ON blobs (account_id);
CREATE TABLE messages (
	id            INTEGER PRIMARY KEY,
	mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	uid           INTEGER NOT NULL,
	blob_key      TEXT NOT NULL REFERENCES blobs(key) DEFERRABLE INITIALLY DEFERRED,
	flags         INTEGER NOT NULL,
	keywords      TEXT NOT NULL,
	modseq        INTEGER NOT NULL,
	internal_date INTEGER NOT NULL,
	internal_tz   INTEGER NOT NULL,
	save_date     INTEGER NOT NULL,
	size          INTEGER NOT NULL,
	sha256        BLOB NOT NULL,
	envelope      TEXT NOT NULL,
	bodystructure TEXT NOT NULL,
	body          TEXT NOT NULL,
	structure     BLOB NOT NULL,
	header        BLOB NOT NULL,
	subject       TEXT NOT NULL,
	from_addr     TEXT NOT NULL,
	to_addr       TEXT NOT NULL,
	cc_addr       TEXT NOT NULL,
	bcc_addr      TEXT NOT NULL,
	date          INTEGER,
	message_id    TEXT NOT NULL,
	UNIQUE (mailbox_id, uid)
);
CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);
CREATE INDEX messages_blob ON messages (blob_key);
CREATE TABLE expunged (
	mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	uid        INTEGER NOT NULL,
	modseq     INTEGER NOT NULL,
	PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);
`,
	// 2: covering index for the per-mailbox counts (STATUS MESSAGES,
	// UNSEEN, SIZE; LIST), so they never read message rows.
	`CREATE INDEX messages_counts ON messages (mailbox_id, flags, size);`,
}

// MailMigrationsPG is MailMigrations for PostgreSQL (OpenPostgres): the
// same tables, columns, versions and meaning, in PostgreSQL types (see
// postgres.go): BIGINT integers, identity ids, BYTEA blobs, text in the
// "C" collation, and a two-argument max(bigint, bigint) for SQLite's
// scalar max.
var MailMigrationsPG = []string{
	// 1: initial schema.
	`
CREATE FUNCTION max(a bigint, b bigint) RETURNS bigint
	LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT greatest(a, b)';
CREATE TABLE accounts (
	id               BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	name             TEXT COLLATE "C" NOT NULL UNIQUE,
	next_uidvalidity BIGINT NOT NULL,
	created          BIGINT NOT NULL
);
CREATE TABLE counters (
	name  TEXT COLLATE "C" PRIMARY KEY,
	value BIGINT NOT NULL
);
CREATE TABLE mailboxes (
	id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	account_id    BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	guid          TEXT COLLATE "C" NOT NULL UNIQUE,
	name          TEXT COLLATE "C" NOT NULL,
	uidvalidity   BIGINT NOT NULL,
	uidnext       BIGINT NOT NULL,
	highestmodseq BIGINT NOT NULL,
	special_use   TEXT COLLATE "C" NOT NULL DEFAULT '',
	created       BIGINT NOT NULL,
	UNIQUE (account_id, name)
);
CREATE TABLE subscriptions (
	account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	name       TEXT COLLATE "C" NOT NULL,
	PRIMARY KEY (account_id, name)
);
CREATE TABLE keywords (
	account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	lname      TEXT COLLATE "C" NOT NULL,
	name       TEXT COLLATE "C" NOT NULL,
	PRIMARY KEY (account_id, lname)
);
CREATE TABLE blobs (
	key        TEXT COLLATE "C" PRIMARY KEY,
	account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	refs       BIGINT NOT NULL,
	size       BIGINT NOT NULL,
	sha256     BYTEA NOT NULL
);
CREATE INDEX blobs_account ON blobs (account_id);
CREATE TABLE messages (
	id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	mailbox_id    BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	uid           BIGINT NOT NULL,
	blob_key      TEXT COLLATE "C" NOT NULL REFERENCES blobs(key) DEFERRABLE INITIALLY DEFERRED,
	flags         BIGINT NOT NULL,
	keywords      TEXT COLLATE "C" NOT NULL,
	modseq        BIGINT NOT NULL,
	internal_date BIGINT NOT NULL,
	internal_tz   BIGINT NOT NULL,
	save_date     BIGINT NOT NULL,
	size          BIGINT NOT NULL,
	sha256        BYTEA NOT NULL,
	envelope      BYTEA NOT NULL,
	bodystructure BYTEA NOT NULL,
	body          BYTEA NOT NULL,
	structure     BYTEA NOT NULL,
	header        BYTEA NOT NULL,
	subject       BYTEA NOT NULL,
	from_addr     BYTEA NOT NULL,
	to_addr       BYTEA NOT NULL,
	cc_addr       BYTEA NOT NULL,
	bcc_addr      BYTEA NOT NULL,
	date          BIGINT,
	message_id    BYTEA NOT NULL,
	UNIQUE (mailbox_id, uid)
);
CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);
CREATE INDEX messages_blob ON messages (blob_key);
CREATE TABLE expunged (
	mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	uid        BIGINT NOT NULL,
	modseq     BIGINT NOT NULL,
	PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);
`,
	// 2: as MailMigrations[1].
	`CREATE INDEX messages_counts ON messages (mailbox_id, flags, size);`,
}
