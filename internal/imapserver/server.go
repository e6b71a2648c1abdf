// Package imapserver is the IMAP engine: connection state machine
// (RFC 3501 §3, RFC 9051 §3), commands and extensions. It parses and
// encodes with imapwire and keeps mail state only through mailstore.
package imapserver

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"

	"github.com/bucketmail/bucketmail/internal/mailstore"
	"github.com/bucketmail/bucketmail/internal/userdb"
)

// Options configure a Server.
type Options struct {
	Store *mailstore.Store
	Auth  userdb.PassDB
	// TLS, when set, enables STARTTLS on plain listeners and is used by
	// ServeTLS listeners.
	TLS *tls.Config
	// AllowInsecureAuth allows LOGIN/AUTHENTICATE without TLS from
	// non-loopback addresses. Loopback clients may always authenticate.
	AllowInsecureAuth bool
	// MaxAppendSize bounds APPEND literals in bytes (default 50 MiB).
	MaxAppendSize int64
	Logger        *slog.Logger
}

// Server serves IMAP on any number of listeners.
type Server struct {
	opts Options
}

// New returns a server.
func New(opts Options) *Server { return &Server{opts: opts} }

// Serve accepts connections on ln until Shutdown. With implicitTLS the
// connection starts with a TLS handshake (port 993 style).
func (s *Server) Serve(ln net.Listener, implicitTLS bool) error {
	return errors.New("imapserver: not implemented")
}

// Shutdown stops accepting, tells idle clients BYE and waits for commands
// in progress until ctx ends, then closes the remaining connections.
func (s *Server) Shutdown(ctx context.Context) error { return nil }
