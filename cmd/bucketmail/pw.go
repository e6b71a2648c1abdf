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

	"github.com/bucketmail/bucketmail/internal/userdb/password"
)

// pwSchemes are the schemes `bucketmail pw -s` can generate
// (password.HashScheme); every scheme in package password verifies.
var pwSchemes = []string{"ARGON2ID", "BLF-CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "PLAIN", "CLEAR"}

// cmdPw is `bucketmail pw [-s SCHEME] [-p PASSWORD] [-t HASH] [-l]`, like
// `doveadm pw`: it prints "{SCHEME}hash" for the password given with -p,
// on the first line of standard input when it is not a terminal, or typed
// twice at a prompt. -t HASH checks the password against HASH instead
// ("HASH (verified)", exit 1 on a mismatch). -l lists the schemes.
func cmdPw(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pw", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scheme := fs.String("s", "ARGON2ID", "password `scheme`: "+strings.Join(pwSchemes, ", "))
	pw := fs.String("p", "", "the `password` (visible to other local users in the process list; prefer standard input)")
	test := fs.String("t", "", "verify the password against this `hash` instead of hashing it")
	list := fs.Bool("l", false, "list the schemes")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: pw takes no arguments, got %q", errUsage, pos)
	}
	if *list {
		fmt.Fprintln(stdout, strings.Join(pwSchemes, " "))
		return nil
	}
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "p" })
	p := *pw
	if !given {
		if p, err = readPwInput(stdin, stderr); err != nil {
			return err
		}
	}
	if *test != "" {
		ok, err := password.Verify(*test, p)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("reverse password verification check failed: the password does not match")
		}
		fmt.Fprintf(stdout, "%s (verified)\n", *test)
		return nil
	}
	h, err := password.HashScheme(*scheme, p)
	if errors.Is(err, password.ErrUnknownScheme) {
		return fmt.Errorf("%w: pw -s %s: can generate %s", errUsage, *scheme, strings.Join(pwSchemes, ", "))
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, h)
	return nil
}

// readPwInput reads the password: a prompt (twice, no echo) on a terminal,
// else the first line of stdin.
func readPwInput(stdin io.Reader, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && isTerminal(f) {
		return readPassword(stdin, stderr, false)
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", fmt.Errorf("reading password from standard input: %w", err)
	}
	return checkPassword(strings.TrimRight(line, "\r\n"))
}
