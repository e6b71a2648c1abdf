// Package e2e runs the real bucketmail binary (built from this checkout)
// against real clients: go-imap v2's imapclient, Python's imaplib and
// smtplib.LMTP, mbsync, and Debian's Dovecot as a reference server.
//
// Delivered bytes: every message is delivered over LMTP with go-smtp's
// client, which sends bare LF line ends as CRLF and ends an unterminated
// last line with CRLF (e2e.Wire). bucketmail stores Return-Path,
// Delivered-To and Received header fields followed by exactly those
// bytes; the tests check BODY[] against that, field by field for the
// prefix (e2e.TracePrefix) and byte for byte for the rest.
//
// Tools that are missing locally (dovecot, python3, mbsync) make their
// tests skip; under CI=true they fail instead.
package e2e

import (
	"testing"

	"github.com/bucketmail/bucketmail/internal/testutil/e2e"
)

func TestMain(m *testing.M) { e2e.Main(m) }

const (
	sender   = "sender@example.net"
	user     = "user@example.org"
	password = "e2e-secret-1"
)
