package httpmetrics

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/portcullis-gw/portcullis/shared/rungroup"
)

// The metrics listener: each plane serves /metrics (and, when turned on,
// /debug/pprof/) on an address of its own, never on its API port, so that what the
// metrics reveal (routes, deployments, the Go runtime, the limiter's clients when
// their labels are on) and the profiles reach only whoever can reach that address:
// loopback by default.
const (
	// KeyListen is the key of the listener's address (PORTCULLIS_METRICS_LISTEN).
	KeyListen = "metrics-listen"
	// KeyPprof is the key that serves /debug/pprof/ there (PORTCULLIS_PPROF).
	KeyPprof = "pprof"
	// ListenOff, as KeyListen's value, turns the listener off.
	ListenOff = "off"
)

// CheckListen returns why s is not a valid metrics listener address, "" when it
// is: host:port with an explicit host (0.0.0.0 or [::] for every interface) and a
// numeric port (0 picks a free one), or ListenOff.
func CheckListen(s string) string {
	if s == ListenOff {
		return ""
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return `must be host:port (e.g. 127.0.0.1:9464; 0.0.0.0:9464 for every interface) or "off"`
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "port must be a number from 0 to 65535"
	}
	return ""
}

// IsLoopback reports whether the listen address addr (host:port) is on loopback only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Mux is the metrics listener's handler: GET /metrics, and with pprof the
// net/http/pprof handlers under /debug/pprof/ (the index and the named profiles,
// cmdline, profile, symbol and trace). Every other path is 404. It does not use
// http.DefaultServeMux, on which importing net/http/pprof also registers them.
func (h *HTTP) Mux(withPprof bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h.Handler())
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index) // also serves the named profiles: heap, goroutine, allocs, …
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// shutdownGrace bounds the metrics server's own shutdown when its group ends
// without a Stop: a scrape is cheap to cut, and a profile in flight is not worth
// holding a stop for.
const shutdownGrace = time.Second

// Server is a running metrics listener. A nil *Server is one that is off: its
// methods do nothing and Addr is "".
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen opens the metrics listener on addr, serving h.Mux(withPprof); it returns a
// nil *Server when addr is ListenOff. Call Run (a rungroup component) to serve it,
// and Close to stop it. log receives the server's own errors and a line saying
// where it listens.
func (h *HTTP) Listen(ctx context.Context, addr string, withPprof bool, log *slog.Logger) (*Server, error) {
	if addr == ListenOff {
		log.Info("metrics listener off")
		return nil, nil
	}
	if reason := CheckListen(addr); reason != "" {
		return nil, fmt.Errorf("%s %q: %s", KeyListen, addr, reason)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener on %s: %w", addr, err)
	}
	s := &Server{ln: ln, srv: &http.Server{
		Handler:           h.Mux(withPprof),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// No WriteTimeout: /debug/pprof/profile and /trace write after the seconds
		// they are asked to sample (and refuse a duration above a WriteTimeout).
	}}
	log.Info("metrics listening", "addr", s.Addr(), "pprof", withPprof, "loopback", IsLoopback(addr))
	if withPprof && !IsLoopback(addr) {
		log.Warn("pprof is served on a metrics listener that is not on loopback: whoever can reach it reads "+
			"the process's memory profiles, goroutine stacks and command line; restrict it with a network policy or firewall",
			"addr", s.Addr())
	}
	return s, nil
}

// Addr is the address the listener is bound to (with the real port when addr asked
// for port 0), "" when it is off.
func (s *Server) Addr() string {
	if s == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Run serves until ctx ends or Close is called (rungroup.HTTPServer); a listener
// that fails to serve is the component's failure.
func (s *Server) Run(ctx context.Context) error {
	if s == nil {
		return nil
	}
	return rungroup.HTTPServer{Server: s.srv, Listener: s.ln, ShutdownGrace: shutdownGrace}.Run(ctx)
}

// Close stops the listener at once, cutting the scrapes and profiles in flight; it
// also closes a listener Run never got to serve.
func (s *Server) Close() {
	if s == nil {
		return
	}
	_ = s.srv.Close()
	_ = s.ln.Close()
}
