// Package metrics holds the server's Prometheus metrics
// (prometheus/client_golang) and serves them over HTTP at /metrics when
// metrics.listen is set.
//
// One Registry per server process; packages that count something take
// the collectors they need from it (no global registry, so tests can
// run several servers in one process).
package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric name ("bucketmail_…").
const Namespace = "bucketmail"

// Registry is a server's metrics registry.
type Registry struct {
	*prometheus.Registry
}

// New returns a registry with the Go runtime and process collectors.
func New() *Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Registry{r}
}

// Serve serves /metrics on ln until ctx is done; then it shuts the
// server down (up to 5 s) and returns nil. Other errors are the HTTP
// server's.
func (r *Registry) Serve(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r.Registry, promhttp.HandlerOpts{ErrorLog: slogErrorLog{log}}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		<-done
		return nil
	}
}

// slogErrorLog adapts a *slog.Logger to promhttp.Logger.
type slogErrorLog struct{ log *slog.Logger }

func (l slogErrorLog) Println(v ...any) {
	if l.log != nil {
		l.log.Warn("metrics: handler error", "err", v)
	}
}
