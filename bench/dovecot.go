package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// dovecotBinary returns the path of dovecot, or "".
func dovecotBinary() string {
	if p, err := exec.LookPath("dovecot"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/dovecot"); err == nil {
		return "/usr/sbin/dovecot"
	}
	return ""
}

// ensureDovecot installs Debian's dovecot-imapd and dovecot-lmtpd when
// dovecot is missing (needs root and the Debian package registry).
func ensureDovecot(ctx context.Context, env *runEnv) error {
	if dovecotBinary() != "" {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("dovecot: not installed and not root: apt-get install dovecot-imapd dovecot-lmtpd")
	}
	env.Log.Info("dovecot: not installed; installing dovecot-imapd dovecot-lmtpd with apt-get")
	install := func() error {
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "--no-install-recommends", "dovecot-imapd", "dovecot-lmtpd")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get install: %v\n%s", err, tailString(string(out), 2000))
		}
		return nil
	}
	if err := install(); err != nil {
		if out, uerr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); uerr != nil {
			return fmt.Errorf("apt-get update: %v\n%s", uerr, tailString(string(out), 2000))
		}
		if err := install(); err != nil {
			return err
		}
	}
	if dovecotBinary() == "" {
		return fmt.Errorf("dovecot: still missing after apt-get install")
	}
	return nil
}

// dovecotVersion returns `dovecot --version`.
func dovecotVersion() string {
	bin := dovecotBinary()
	if bin == "" {
		return "not installed"
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// dovecot is a running Dovecot master with a throwaway config.
type dovecot struct {
	bin, conf, dir, runDir string
	imap, lmtp             string
	pid                    int
}

func (d *dovecot) IMAPAddr() string { return d.imap }
func (d *dovecot) LMTPAddr() string { return d.lmtp }

// Memory sums the PSS of the master and all its children (login, imap,
// lmtp, auth, anvil, log, config processes).
func (d *dovecot) Memory() (int64, error) { return treePSS(d.pid) }

// tunedServices is what an operator tuning for speed sets: login and imap
// processes are reused instead of forked per connection, a few are kept
// waiting, and verified logins are cached. Maildir syncs trust that only
// Dovecot changes the Maildir (maildir_very_dirty_syncs).
const tunedServices = `
service imap-login {
  service_count = 0
  process_min_avail = 2
  client_limit = 5000
  vsz_limit = 1G
}
service imap {
  service_count = 0
  process_min_avail = 16
  process_limit = 5000
}
service lmtp {
  service_count = 0
  process_min_avail = 8
}
auth_cache_size = 10M
maildir_very_dirty_syncs = yes
`

// defaultServices keeps Dovecot's service defaults (a new login process
// and a new imap process per connection) and raises only the limits that
// 2,000 connections need.
const defaultServices = `
service imap {
  process_limit = 5000
}
`

func startDovecot(ctx context.Context, env *runEnv, tuned bool) (Target, error) {
	bin := dovecotBinary()
	if bin == "" {
		return nil, fmt.Errorf("dovecot: not installed")
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("dovecot: needs root (it runs mail as the system user mail)")
	}
	mailUser, err := user.Lookup("mail")
	if err != nil {
		return nil, fmt.Errorf("dovecot: no system user mail: %w", err)
	}
	uid, _ := strconv.Atoi(mailUser.Uid)
	gid, _ := strconv.Atoi(mailUser.Gid)

	dir, err := os.MkdirTemp("", "bmbench-dovecot-")
	if err != nil {
		return nil, err
	}
	// base_dir holds unix sockets: keep its path short.
	runDir, err := os.MkdirTemp("", "bmbd")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	d := &dovecot{bin: bin, dir: dir, runDir: runDir, conf: filepath.Join(dir, "dovecot.conf")}
	fail := func(err error) (Target, error) {
		os.RemoveAll(dir)
		os.RemoveAll(runDir)
		return nil, fmt.Errorf("dovecot: %w", err)
	}
	for _, p := range []string{dir, runDir} {
		if err := os.Chmod(p, 0o755); err != nil {
			return fail(err)
		}
	}
	mail := filepath.Join(dir, "mail")
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o755); err != nil {
		return fail(err)
	}
	if err := os.Mkdir(mail, 0o755); err != nil {
		return fail(err)
	}
	if err := os.Chown(mail, uid, gid); err != nil {
		return fail(err)
	}
	var pw strings.Builder
	for _, u := range env.Users {
		fmt.Fprintf(&pw, "%s:%s::::::\n", u, env.Hash)
	}
	passwd := filepath.Join(dir, "passwd")
	if err := os.WriteFile(passwd, []byte(pw.String()), 0o644); err != nil {
		return fail(err)
	}
	if d.imap, err = env.Ports.Addr(); err != nil {
		return fail(err)
	}
	if d.lmtp, err = env.Ports.Addr(); err != nil {
		return fail(err)
	}
	_, imapPort, _ := net.SplitHostPort(d.imap)
	_, lmtpPort, _ := net.SplitHostPort(d.lmtp)
	services := defaultServices
	if tuned {
		services = tunedServices
	}
	conf := fmt.Sprintf(`# throwaway config written by bucketmail's bench
base_dir = %[1]s
state_dir = %[2]s/state
log_path = %[2]s/dovecot.log
instance_name = bmbench-%[3]s
listen = 127.0.0.1
protocols = imap lmtp
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = %[4]d
last_valid_uid = %[4]d
mail_location = maildir:%[5]s/%%u/Maildir
mail_save_crlf = yes
default_process_limit = 5000
default_client_limit = 10000
protocol imap {
  mail_max_userip_connections = 10000
}
protocol lmtp {
  auth_username_format = %%u
}
passdb {
  driver = passwd-file
  args = username_format=%%u %[6]s
}
userdb {
  driver = static
  args = uid=%[4]d gid=%[7]d home=%[5]s/%%u
}
namespace inbox {
  inbox = yes
  separator = /
  mailbox Drafts {
    special_use = \Drafts
    auto = subscribe
  }
  mailbox Sent {
    special_use = \Sent
    auto = subscribe
  }
  mailbox Trash {
    special_use = \Trash
    auto = subscribe
  }
  mailbox Junk {
    special_use = \Junk
    auto = subscribe
  }
  mailbox Archive {
    special_use = \Archive
    auto = subscribe
  }
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[8]s
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %[9]s
  }
}
%[10]s`, runDir, dir, lmtpPort, uid, mail, passwd, gid, imapPort, lmtpPort, services)
	if err := os.WriteFile(d.conf, []byte(conf), 0o644); err != nil {
		return fail(err)
	}
	if err := d.startMaster(ctx); err != nil {
		d.Stop(ctx)
		return nil, fmt.Errorf("dovecot: %w", err)
	}
	return d, nil
}

func (d *dovecot) logTail() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "dovecot.log"))
	if len(b) == 0 {
		return ""
	}
	return "\ndovecot log:\n" + tailString(string(b), 3000)
}

// Stop stops the master and removes the temp dirs.
func (d *dovecot) Stop(ctx context.Context) error {
	err := d.stopMaster()
	removeLater(d.runDir)
	removeLater(d.dir)
	return err
}

// stopMaster runs `dovecot -c CONF stop` and waits for the master to exit
// (killing it after 20 s).
func (d *dovecot) stopMaster() error {
	err := runTo(filepath.Join(d.dir, "stop.out"), d.bin, "-c", d.conf, "stop")
	if d.pid > 0 {
		deadline := time.Now().Add(20 * time.Second)
		for syscall.Kill(d.pid, 0) == nil {
			if time.Now().After(deadline) {
				syscall.Kill(d.pid, syscall.SIGKILL)
				err = fmt.Errorf("dovecot: master %d still running 20 s after stop; killed", d.pid)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return err
}

// Restart stops the master and starts it again on the same config and
// mail.
func (d *dovecot) Restart(ctx context.Context) error {
	if err := d.stopMaster(); err != nil {
		return err
	}
	return d.startMaster(ctx)
}

// startMaster starts the master and waits for both listeners.
func (d *dovecot) startMaster(ctx context.Context) error {
	var err error
	for i := 0; i < 50; i++ { // the ports were just released
		if err = runTo(filepath.Join(d.dir, "start.out"), d.bin, "-c", d.conf); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("%v%s", err, d.logTail())
	}
	for _, w := range []struct{ addr, greeting string }{{d.imap, "* OK"}, {d.lmtp, "220 "}} {
		if err := waitGreeting(ctx, w.addr, w.greeting, 15*time.Second, nil); err != nil {
			return fmt.Errorf("%w%s", err, d.logTail())
		}
	}
	// The master writes its pid file after it daemonizes.
	b, err := os.ReadFile(filepath.Join(d.runDir, "master.pid"))
	if err == nil {
		d.pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if err != nil {
		return fmt.Errorf("master.pid: %w", err)
	}
	return nil
}

// runTo runs a command with its output going to the file out (the
// dovecot master daemonizes and its children keep the standard streams).
func runTo(out, name string, args ...string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out)
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, b)
	}
	return nil
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
