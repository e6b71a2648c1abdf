package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/bucketmail/bucketmail/internal/bus"
	"github.com/bucketmail/bucketmail/internal/config"
	"github.com/bucketmail/bucketmail/internal/userdb"
	"github.com/bucketmail/bucketmail/internal/userdb/dynamodb"
)

func cmdUser(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: user needs a subcommand: add, passwd, del, list", errUsage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := config.RegisterFlags(fs, false)
	var pwStdin bool
	switch sub {
	case "add", "passwd":
		fs.BoolVar(&pwStdin, "password-stdin", false, "read the password from the first line of standard input")
	case "del", "list":
	default:
		return fmt.Errorf("%w: unknown user subcommand %q", errUsage, sub)
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	wantArgs := 1
	if sub == "list" {
		wantArgs = 0
	}
	if len(pos) != wantArgs {
		return fmt.Errorf("%w: user %s takes %d address argument(s), got %d", errUsage, sub, wantArgs, len(pos))
	}
	cfg, err := flags.Load()
	if err != nil {
		return err
	}
	policy, err := userdb.ParseAddressPolicy(cfg.Auth.LocalPartCase, cfg.Auth.Normalize)
	if err != nil {
		return err
	}
	var address string
	if wantArgs == 1 {
		address = policy.Normalize(pos[0])
		if !strings.Contains(address, "@") || strings.ContainsAny(address, " \t\r\n<>\"") {
			return fmt.Errorf("%w: %q is not an address like user@example.org", errUsage, pos[0])
		}
	}

	// Read the password before opening the store, so a prompt is not
	// kept waiting with the database open.
	var password string
	if sub == "add" || sub == "passwd" {
		if password, err = readPassword(stdin, stderr, pwStdin); err != nil {
			return err
		}
	}

	log := newLogger(cfg, stderr)
	if sub != "list" && cfg.MetaDBKind() == "postgres" && cfg.BusKind() == "local" {
		// Servers elsewhere share the user database but hear nothing
		// from this command (the local bus reaches only a serve on this
		// data directory, through its control socket).
		log.Warn("user " + sub + ": metadb = postgres but bus = local: other servers see this change only when their auth caches expire " +
			"(auth.cache_ttl); give the servers' --bus nats://… or postgres://… to tell them at once")
	}
	e, err := openEnvWith(ctx, cfg, log, envOptions{cli: "user"})
	if err != nil {
		return err
	}
	defer e.Close()
	m, err := e.manager()
	if err != nil {
		return err
	}

	// Account changes are announced on the bus: "updating" before the
	// write, "updated" after it (DESIGN §5), so every server bypasses
	// its auth cache for the address meanwhile and flushes it after.
	account := address
	if sub == "passwd" {
		if u, err := e.users.Lookup(ctx, address); err == nil {
			account = u.Account
		}
	}
	switch sub {
	case "add":
		e.announce(ctx, bus.KindAccountUpdating, account, address)
		defer e.announce(ctx, bus.KindAccountUpdated, account, address)
		err := m.AddUser(ctx, address, password)
		if d, ok := e.users.(*dynamodb.DB); ok && isMissingTable(err) {
			// The first user of a new DynamoDB table: create it.
			if err := d.CreateTable(ctx); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "created DynamoDB table %s\n", d.Table())
			err = m.AddUser(ctx, address, password)
		}
		if err != nil {
			if errors.Is(err, userdb.ErrExists) {
				return fmt.Errorf("user %s already exists", address)
			}
			return err
		}
		// Create the account's mailboxes now, so the first IMAP login
		// finds them and a broken store shows up here.
		u, err := e.users.Lookup(ctx, address)
		if err != nil {
			return err
		}
		if _, err := e.store.Account(ctx, u.Account); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "added %s\n", address)
	case "passwd":
		e.announce(ctx, bus.KindAccountUpdating, account, address)
		defer e.announce(ctx, bus.KindAccountUpdated, account, address)
		if err := m.SetPassword(ctx, address, password); err != nil {
			if errors.Is(err, userdb.ErrNotFound) {
				return fmt.Errorf("no user %s", address)
			}
			return err
		}
		fmt.Fprintf(stdout, "password changed for %s\n", address)
	case "del":
		u, err := e.users.Lookup(ctx, address)
		if err != nil {
			if errors.Is(err, userdb.ErrNotFound) {
				return fmt.Errorf("no user %s", address)
			}
			return err
		}
		e.announce(ctx, bus.KindAccountUpdating, u.Account, address)
		defer e.announce(ctx, bus.KindAccountUpdated, u.Account, address)
		// The user goes first, so no delivery or login starts while the
		// mail is removed.
		if err := m.DeleteUser(ctx, address); err != nil {
			return err
		}
		if err := e.store.DeleteAccount(ctx, u.Account); err != nil {
			return fmt.Errorf("user %s deleted, but deleting its mail failed: %w", address, err)
		}
		fmt.Fprintf(stdout, "deleted %s and its mail\n", address)
	case "list":
		list, err := m.ListUsers(ctx)
		if err != nil {
			return err
		}
		for _, u := range list {
			line := u.Address
			if u.Disabled {
				line += "\tdisabled"
			}
			fmt.Fprintln(stdout, line)
		}
	}
	return nil
}

// isMissingTable reports whether err says the DynamoDB table does not
// exist.
func isMissingTable(err error) bool {
	var nf *types.ResourceNotFoundException
	return errors.As(err, &nf)
}

// readPassword reads the new password: the first line of stdin with
// fromStdin, else a prompt (twice, no echo) when stdin is a terminal.
func readPassword(stdin io.Reader, stderr io.Writer, fromStdin bool) (string, error) {
	if !fromStdin {
		f, ok := stdin.(*os.File)
		if !ok || !isTerminal(f) {
			return "", fmt.Errorf("%w: standard input is not a terminal: use --password-stdin", errUsage)
		}
		p1, err := readNoEcho(f, stderr, "Password: ")
		if err != nil {
			return "", err
		}
		p2, err := readNoEcho(f, stderr, "Again: ")
		if err != nil {
			return "", err
		}
		if p1 != p2 {
			return "", errors.New("the passwords differ")
		}
		return checkPassword(p1)
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", fmt.Errorf("reading password from standard input: %w", err)
	}
	return checkPassword(strings.TrimRight(line, "\r\n"))
}

func checkPassword(p string) (string, error) {
	if p == "" {
		return "", errors.New("empty password")
	}
	return p, nil
}
