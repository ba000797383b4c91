// Package httpapi is the broker's HTTP listener (property http.listener):
// Prometheus metrics (/metrics), liveness (/healthz), readiness (/readyz,
// with JSON detail), Go's profiler (/debug/pprof, behind http.pprof.enable),
// and the web console (/ui, assets embedded) with the JSON endpoints it
// reads (/api/...).
//
// The console's endpoints act through an ordinary Kafka client (kadm)
// connected to the broker's own client listener, so any broker of a cluster
// serves the whole cluster's view, exactly as a client would see it.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configure a Server.
type Options struct {
	// Addr is host:port to listen on (port 0 picks a free port).
	Addr string
	// Pprof serves /debug/pprof.
	Pprof bool
	// Ready reports readiness and its detail (JSON-encoded into /readyz's
	// body); nil means always ready.
	Ready func() (bool, any)
	// Registry is what /metrics serves; nil serves no /metrics.
	Registry *prometheus.Registry
	// Brokers are the seed brokers of the console's Kafka client (this
	// node's client listener); none serves no console.
	Brokers []string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Server is a bound HTTP listener.
type Server struct {
	ln      net.Listener
	srv     *http.Server
	console *console
	logger  *slog.Logger
}

// Listen binds opts.Addr and prepares the handlers; Serve serves them.
func Listen(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("http.listener %s: %w (set http.listener to another host:port, or empty to disable it)", opts.Addr, err)
	}
	s := &Server{ln: ln, logger: opts.Logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ready, detail := true, any(map[string]bool{"ready": true})
		if opts.Ready != nil {
			ready, detail = opts.Ready()
		}
		code := http.StatusOK
		if !ready {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, detail)
	})
	if opts.Registry != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{ErrorLog: slogErrorLog{opts.Logger}}))
	}
	if opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if len(opts.Brokers) > 0 {
		c, err := newConsole(opts.Brokers, opts.Logger)
		if err != nil {
			ln.Close()
			return nil, err
		}
		s.console = c
		c.register(mux)
	}
	// The console changes things (produce, configs) on POST: refuse
	// cross-site browser requests (CSRF) to them.
	s.srv = &http.Server{Handler: http.NewCrossOriginProtection().Handler(mux), ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until ctx ends, then shuts the listener down.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		s.closeConsole()
		return fmt.Errorf("http listener: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	<-errc
	s.closeConsole()
	if errors.Is(err, context.DeadlineExceeded) {
		return s.srv.Close()
	}
	return err
}

// Close releases a server that will not Serve.
func (s *Server) Close() error {
	s.closeConsole()
	return s.ln.Close()
}

func (s *Server) closeConsole() {
	if s.console != nil {
		s.console.close()
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// slogErrorLog adapts slog to promhttp's error logger.
type slogErrorLog struct{ l *slog.Logger }

func (e slogErrorLog) Println(v ...any) { e.l.Warn("metrics scrape", "err", fmt.Sprint(v...)) }
