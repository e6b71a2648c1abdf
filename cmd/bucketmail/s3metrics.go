package main

import (
	"strings"

	"github.com/bucketmail/bucketmail/internal/blob/s3"
	"github.com/bucketmail/bucketmail/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// s3Collector exports the S3 store's own counters (s3.Store.Stats) on
// /metrics, read at each scrape:
//
//	bucketmail_s3_requests_total{operation}  HTTP requests sent, retries included
//	bucketmail_s3_calls_total{operation}     calls of the operation
//	bucketmail_s3_errors_total{operation}    calls that failed (a missing object is no error)
//
// operation is the S3 API name: PutObject, GetObject, HeadObject,
// DeleteObject, ListObjectsV2, HeadBucket.
type s3Collector struct{ st *s3.Store }

var s3Descs = map[string]*prometheus.Desc{
	"requests": prometheus.NewDesc(metrics.Namespace+"_s3_requests_total",
		"HTTP requests sent to the bucket, retries included, by S3 operation.", []string{"operation"}, nil),
	"ops": prometheus.NewDesc(metrics.Namespace+"_s3_calls_total",
		"Calls of each S3 operation (one call may send several requests).", []string{"operation"}, nil),
	"errors": prometheus.NewDesc(metrics.Namespace+"_s3_errors_total",
		"Calls of each S3 operation that failed (a missing object is not counted).", []string{"operation"}, nil),
}

func (c s3Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range s3Descs {
		ch <- d
	}
}

func (c s3Collector) Collect(ch chan<- prometheus.Metric) {
	for k, v := range c.st.Stats() {
		op, kind, ok := strings.Cut(k, ".")
		if d := s3Descs[kind]; ok && d != nil {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), op)
		}
	}
}
