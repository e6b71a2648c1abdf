package main

import (
	"fmt"
	"math"
	"strings"
)

// metric is one row of the table.
type metric struct {
	Key   string
	Label string
	// Higher is true when a larger value is better.
	Higher bool
	// Goal describes the goal for the ratio bucketmail / Dovecot
	// (or an absolute value), "" for none; check tests a ratio against it.
	Goal  string
	check func(fs, s3 float64) string
}

// cell is one value: a number, or a reason it is missing.
type cell struct {
	V    float64
	NA   string // "n/a (...)" text when set
	Prec int    // decimals
}

func (c cell) String() string {
	if c.NA != "" {
		return c.NA
	}
	if math.IsNaN(c.V) {
		return "n/a (no samples)"
	}
	return fmt.Sprintf("%.*f", c.Prec, c.V)
}

func (c cell) ok() bool { return c.NA == "" && !math.IsNaN(c.V) }

// Report is the result of a run: rows of metrics by server column.
type Report struct {
	Columns []server
	Metrics []metric
	Cells   map[string]map[string]cell // metric key -> server name -> cell
	Notes   []string
}

func newReport(cols []server) *Report {
	r := &Report{Columns: cols, Cells: map[string]map[string]cell{}}
	ratioGoal := func(min, max float64, fsOnly bool) func(fs, s3 float64) string {
		return func(fs, s3 float64) string {
			okf := func(v float64) bool {
				return !math.IsNaN(v) && (min == 0 || v >= min) && (max == 0 || v <= max)
			}
			var out []string
			if !math.IsNaN(fs) {
				out = append(out, map[bool]string{true: "fs ok", false: "fs MISS"}[okf(fs)])
			}
			if !fsOnly && !math.IsNaN(s3) {
				out = append(out, map[bool]string{true: "s3 ok", false: "s3 MISS"}[okf(s3)])
			}
			return strings.Join(out, ", ")
		}
	}
	add := func(m metric) { r.Metrics = append(r.Metrics, m) }
	lmtpGoal := func(fs, s3 float64) string {
		var out []string
		if !math.IsNaN(fs) {
			out = append(out, map[bool]string{true: "fs ok", false: "fs MISS"}[fs >= 1])
		}
		if !math.IsNaN(s3) {
			out = append(out, map[bool]string{true: "s3 ok", false: "s3 MISS"}[s3 >= 0.8])
		}
		return strings.Join(out, ", ")
	}
	add(metric{Key: "lmtp1.rate", Label: "LMTP 1 sender: messages/s", Higher: true, Goal: "fs ≥ 1, s3 ≥ 0.8", check: lmtpGoal})
	add(metric{Key: "lmtp1.p99", Label: "LMTP 1 sender: p99 ms"})
	add(metric{Key: "lmtp8.rate", Label: "LMTP 8 senders: messages/s", Higher: true, Goal: "fs ≥ 1, s3 ≥ 0.8", check: lmtpGoal})
	add(metric{Key: "lmtp8.p99", Label: "LMTP 8 senders: p99 ms"})
	add(metric{Key: "mixed.rate", Label: "mixed IMAP: operations/s", Higher: true, Goal: "≥ 1", check: ratioGoal(1, 0, false)})
	for _, op := range mixedOps {
		add(metric{Key: "mixed.p99." + op, Label: "mixed IMAP p99 ms: " + op, Goal: "≤ 1.2", check: ratioGoal(0, 1.2, false)})
	}
	add(metric{Key: "mixed.p99.lmtp", Label: "mixed IMAP p99 ms: new mail over LMTP (not an IMAP op)"})
	add(metric{Key: "download.rate", Label: "full download UID FETCH 1:* BODY.PEEK[]: MB/s", Higher: true})
	add(metric{Key: "idle.kib", Label: "memory per idle IMAP connection: KiB", Goal: "≤ 0.5", check: ratioGoal(0, 0.5, false)})
	add(metric{Key: "s3.put_per_msg", Label: "S3 PUTs per delivered message", Goal: "= 1 (absolute)"})
	add(metric{Key: "s3.get_fetch_cold", Label: "S3 GETs per FETCH BODY[], cold cache"})
	add(metric{Key: "s3.get_fetch_warm", Label: "S3 GETs per FETCH BODY[], warm cache", Goal: "= 0 (absolute)"})
	add(metric{Key: "reindex.seconds", Label: "reindex 10,000-message account: seconds"})
	add(metric{Key: "reindex.requests", Label: "reindex 10,000-message account: S3 requests"})
	return r
}

func (r *Report) set(key, srv string, c cell) {
	if r.Cells[key] == nil {
		r.Cells[key] = map[string]cell{}
	}
	r.Cells[key][srv] = c
}

func (r *Report) get(key, srv string) cell {
	c, ok := r.Cells[key][srv]
	if !ok {
		return cell{NA: "n/a"}
	}
	return c
}

// ratio returns num/den's values, NaN when either is missing.
func (r *Report) ratio(key, num, den string) float64 {
	a, b := r.get(key, num), r.get(key, den)
	if !a.ok() || !b.ok() || b.V == 0 {
		return math.NaN()
	}
	return a.V / b.V
}

// isDovecotOnly reports whether the metric is about S3 (Dovecot has no
// such number).
func isS3Metric(key string) bool {
	return strings.HasPrefix(key, "s3.") || strings.HasPrefix(key, "reindex.")
}

// Markdown renders the table: metric, one column per server, the ratios
// bucketmail-fs / Dovecot and bucketmail-s3 / Dovecot (Dovecot is the
// tuned one), and the goal with its verdict.
func (r *Report) Markdown() string {
	var b strings.Builder
	head := []string{"metric"}
	for _, c := range r.Columns {
		head = append(head, c.Title)
	}
	head = append(head, "ratio fs/Dovecot", "ratio s3/Dovecot", "goal")
	fmt.Fprintf(&b, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat(" --- |", len(head)))
	fmtRatio := func(v float64) string {
		if math.IsNaN(v) {
			return "—"
		}
		return fmt.Sprintf("%.2f", v)
	}
	for _, m := range r.Metrics {
		row := []string{m.Label}
		for _, c := range r.Columns {
			cl := r.get(m.Key, c.Name)
			if isS3Metric(m.Key) && strings.HasPrefix(c.Name, "dovecot") {
				cl = cell{NA: "—"}
			}
			row = append(row, cl.String())
		}
		fs := r.ratio(m.Key, "bucketmail-fs", "dovecot")
		s3 := r.ratio(m.Key, "bucketmail-s3", "dovecot")
		goal := m.Goal
		if m.check != nil {
			if v := m.check(fs, s3); v != "" {
				goal += ": " + v
			}
		}
		if goal == "" {
			goal = "—"
		}
		row = append(row, fmtRatio(fs), fmtRatio(s3), goal)
		fmt.Fprintf(&b, "| %s |\n", strings.Join(row, " | "))
	}
	return b.String()
}
