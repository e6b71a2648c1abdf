package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/bucketmail/bucketmail/internal/cache"
	"github.com/bucketmail/bucketmail/internal/config"
)

// cmdCache runs "cache stats" and "cache purge" on the read cache in
// [cache] dir (default DATA_DIR/cache; --cache-dir overrides), see package
// internal/cache. stats reads the state file
// the cache writes every few seconds, so it works whether or not serve is
// running; purge needs the cache to itself and fails while serve runs.
func cmdCache(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: cache needs a subcommand: stats, purge", errUsage)
	}
	sub, args := args[0], args[1:]
	if sub != "stats" && sub != "purge" {
		return fmt.Errorf("%w: unknown cache subcommand %q", errUsage, sub)
	}
	fs := flag.NewFlagSet("cache "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := config.RegisterFlags(fs, false)
	var dir string
	fs.StringVar(&dir, "cache-dir", "", "cache `directory` (default [cache] dir, else DATA_DIR/"+cache.DirName+")")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: cache %s takes no arguments, got %q", errUsage, sub, pos)
	}
	cfg, err := flags.Load()
	if err != nil {
		return err
	}
	if dir == "" {
		dir = cfg.Cache.Dir // [cache] dir, default DATA_DIR/cache
	}
	switch sub {
	case "stats":
		s, err := cache.ReadStats(dir)
		if err != nil {
			return err
		}
		printCacheStats(stdout, dir, s)
	case "purge":
		c, err := cache.Open(ctx, cache.Config{Dir: dir, MaxBytes: cfg.Cache.MaxBytes, Policy: cfg.Cache.Policy}, nil, newLogger(cfg, stderr))
		if errors.Is(err, cache.ErrLocked) {
			return fmt.Errorf("cache %s is in use (is serve running? stop it first): %w", dir, err)
		}
		if err != nil {
			return err
		}
		before := c.Stats()
		err = c.Purge(ctx)
		if cerr := c.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "purged %s: %d objects, %d bytes\n", dir, before.Objects, before.Bytes)
	}
	return nil
}

// printCacheStats prints s as a table:
//
//	cache      DIR
//	objects    N
//	bytes      N
//	hits       N
//	misses     N
//	hit ratio  P%
//	evictions  N
//
//	reads  objects  bytes
//	0      N        N
//	1      N        N
//	3-4    N        N
func printCacheStats(w io.Writer, dir string, s cache.Stats) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "cache\t%s\n", dir)
	fmt.Fprintf(tw, "objects\t%d\n", s.Objects)
	fmt.Fprintf(tw, "bytes\t%d\n", s.Bytes)
	fmt.Fprintf(tw, "hits\t%d\n", s.Hits)
	fmt.Fprintf(tw, "misses\t%d\n", s.Misses)
	fmt.Fprintf(tw, "hit ratio\t%.1f%%\n", 100*s.HitRatio)
	fmt.Fprintf(tw, "evictions\t%d\n", s.Evictions)
	tw.Flush()
	if len(s.Histogram) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "reads\tobjects\tbytes")
	for _, b := range s.Histogram {
		r := fmt.Sprint(b.Min)
		if b.Max != b.Min {
			r = fmt.Sprintf("%d-%d", b.Min, b.Max)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\n", r, b.Objects, b.Bytes)
	}
	tw.Flush()
}
