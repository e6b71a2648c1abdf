package main

import (
	"math"
	"sort"
	"sync"
	"time"
)

// latencies collects durations per operation name; safe for concurrent
// use.
type latencies struct {
	mu sync.Mutex
	m  map[string][]time.Duration
}

func (l *latencies) add(op string, d time.Duration) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string][]time.Duration{}
	}
	l.m[op] = append(l.m[op], d)
	l.mu.Unlock()
}

// count returns the number of samples of op ("" for all ops).
func (l *latencies) count(op string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if op != "" {
		return len(l.m[op])
	}
	n := 0
	for _, v := range l.m {
		n += len(v)
	}
	return n
}

// p99 returns the 99th percentile of op (nearest rank), or NaN without
// samples.
func (l *latencies) p99(op string) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return percentile(l.m[op], 0.99)
}

// percentile returns the q-quantile (nearest rank) in milliseconds.
func percentile(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return math.NaN()
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(q*float64(len(s)))) - 1
	if i < 0 {
		i = 0
	}
	return float64(s[i]) / float64(time.Millisecond)
}

// median returns the middle value of v.
func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
