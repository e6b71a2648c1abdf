package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// startCPUProfile fetches a CPU profile of the given length from the
// server's pprof endpoint in the background into file; the returned
// function waits for it.
func startCPUProfile(ctx context.Context, addr, file string, seconds int) func() {
	if seconds < 1 {
		seconds = 1
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fetchTo(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds), file, time.Duration(seconds+30)*time.Second)
	}()
	return func() { <-done }
}

// startTrace starts fetching a runtime execution trace of the given
// length into file; the returned func waits for it.
func startTrace(ctx context.Context, addr, file string, seconds int) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fetchTo(ctx, fmt.Sprintf("http://%s/debug/pprof/trace?seconds=%d", addr, seconds), file, time.Duration(seconds+30)*time.Second)
	}()
	return func() { <-done }
}

// saveProfile fetches a named profile (heap, goroutine) into file.
func saveProfile(ctx context.Context, addr, name, file string) {
	fetchTo(ctx, fmt.Sprintf("http://%s/debug/pprof/%s", addr, name), file, 30*time.Second)
}

func fetchTo(ctx context.Context, url, file string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return
	}
	f, err := os.Create(file)
	if err != nil {
		return
	}
	defer f.Close()
	io.Copy(f, resp.Body)
}

// summariseProfiles returns `go tool pprof -top` of every profile in dir
// as Markdown.
func summariseProfiles(dir string) string {
	files, _ := filepath.Glob(filepath.Join(dir, "*.pprof"))
	sort.Strings(files)
	var b strings.Builder
	for _, f := range files {
		args := []string{"tool", "pprof", "-top", "-nodecount=25"}
		base := filepath.Base(f)
		if strings.Contains(base, "-base.") {
			continue
		}
		if base2 := strings.Replace(f, ".lmtp8.", ".lmtp8-base.", 1); base2 != f {
			if _, err := os.Stat(base2); err == nil {
				args = append(args, "-diff_base="+base2)
			}
		}
		switch {
		case strings.Contains(base, ".heap."):
			args = append(args, "-sample_index=inuse_space")
		case strings.Contains(base, ".goroutine."):
			args = append(args, "-nodecount=10")
		}
		out, err := exec.Command("go", append(args, f)...).CombinedOutput()
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "\n#### %s\n\n```\n%s```\n", base, strings.TrimLeft(string(out), "\n"))
	}
	return b.String()
}
