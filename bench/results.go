package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// loadAvg returns the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// machineInfo returns the lines describing what was measured, where.
func machineInfo(started time.Time, load0, builtFrom string) []string {
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = repoRoot()
		out, err := cmd.Output()
		if err != nil {
			return "unknown"
		}
		return strings.TrimSpace(string(out))
	}
	commit := builtFrom
	if commit == "" { // no bucketmail column ran
		commit = git("rev-parse", "HEAD")
	}
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if _, v, ok := strings.Cut(l, ":"); ok {
					cpu = strings.TrimSpace(v)
				}
				break
			}
		}
	}
	mem := "unknown"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0]); len(f) >= 2 {
			mem = f[1] + " kB"
		}
	}
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return []string{
		"date: " + started.Format("2006-01-02 15:04 UTC") + fmt.Sprintf(" (run took %s)", time.Since(started).Round(time.Second)),
		"commit measured: bucketmail built from " + commit,
		fmt.Sprintf("machine: %d cores (%s), %s memory, Linux %s, %s", runtime.NumCPU(), cpu, mem, kernel, runtime.Version()),
		"dovecot: " + dovecotVersion(),
		"load average (1, 5, 15 min) at start: " + load0 + ", at end: " + loadAvg() + " (other work on the machine skews absolute numbers; the servers ran one after the other)",
	}
}

const beginMarker = "<!-- bench:begin (written by go run ./bench; text outside the markers is kept) -->"
const endMarker = "<!-- bench:end -->"

// writeResults writes the run between the markers of file, keeping what
// is outside them (hand-written notes, before/after history).
func writeResults(file string, sz Sizes, info []string, table string, notes []string, profiles string) error {
	var b strings.Builder
	b.WriteString(beginMarker + "\n")
	fmt.Fprintf(&b, "## Latest run (%s)\n\n", sz.Name)
	for _, l := range info {
		b.WriteString("- " + l + "\n")
	}
	b.WriteString("\n" + table + "\n")
	for _, n := range notes {
		b.WriteString("- " + n + "\n")
	}
	if profiles != "" {
		b.WriteString("\n### Profiles of bucketmail-fs (go tool pprof -top)\n" + profiles)
	}
	b.WriteString(endMarker + "\n")

	old, err := os.ReadFile(file)
	var out string
	switch {
	case err != nil && os.IsNotExist(err):
		out = "# Benchmark results: bucketmail vs Dovecot\n\n" +
			"Made by `go run ./bench` (see bench/main.go). The block between the markers is rewritten by each run.\n\n" +
			b.String()
	case err != nil:
		return err
	default:
		s := string(old)
		i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
		if i < 0 || j < i {
			out = s + "\n" + b.String()
		} else {
			rest := strings.TrimPrefix(s[j+len(endMarker):], "\n")
			out = s[:i] + b.String() + rest
		}
	}
	return os.WriteFile(file, []byte(out), 0o644)
}
