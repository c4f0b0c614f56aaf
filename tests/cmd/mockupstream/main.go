// Command mockupstream serves the deterministic mock upstream of package mockupstream,
// for the dev stack (make run) and manual testing: OpenAI's API (/v1/chat/completions,
// /v1/completions, /v1/embeddings, /v1/models) and Anthropic's Messages API
// (POST /v1/messages, which takes the key in x-api-key and requires anthropic-version).
// It logs one JSON line per request (method, path, status, duration; never a body or a
// key).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "mockupstream:", err)
		os.Exit(1)
	}
}

// config is the command's configuration. Every flag has an environment variable; the
// flag wins over the variable.
type config struct {
	Listen         string
	RequireKeyFile string
	Name           string
	ChunkDelay     time.Duration
}

// Environment variables, one per flag. They are not PORTCULLIS_LISTEN and friends, so
// that the mock and a gateway can share one environment.
const (
	envListen         = "PORTCULLIS_MOCK_LISTEN"
	envRequireKeyFile = "PORTCULLIS_MOCK_REQUIRE_KEY_FILE"
	envName           = "PORTCULLIS_MOCK_NAME"
	envChunkDelay     = "PORTCULLIS_MOCK_CHUNK_DELAY"
)

func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	env := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	var c config
	var problems []error
	fs := flag.NewFlagSet("mockupstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Listen, "listen", env(envListen, "127.0.0.1:9100"), "host:port to serve on (env "+envListen+")")
	fs.StringVar(&c.RequireKeyFile, "require-key-file", env(envRequireKeyFile, ""),
		"file whose trimmed content is the only accepted key (Bearer, or x-api-key on /v1/messages); empty accepts any request (env "+envRequireKeyFile+")")
	fs.StringVar(&c.Name, "name", env(envName, mockupstream.DefaultName), "name shown in replies (env "+envName+")")
	delay := fs.String("chunk-delay", env(envChunkDelay, "0s"), "pause between streamed chunks, e.g. 20ms (env "+envChunkDelay+")")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		problems = append(problems, err)
	}
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		problems = append(problems, fmt.Errorf("listen %q: want host:port", c.Listen))
	}
	if d, err := time.ParseDuration(*delay); err != nil || d < 0 {
		problems = append(problems, fmt.Errorf("chunk-delay %q: want a non-negative duration such as 20ms", *delay))
	} else {
		c.ChunkDelay = d
	}
	return c, errors.Join(problems...)
}

// readKey returns the trimmed content of path, or "" when path is empty.
func readKey(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("require-key-file: %w", err)
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		return "", fmt.Errorf("require-key-file %q: empty", path)
	}
	return key, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	key, err := readKey(cfg.RequireKeyFile)
	if err != nil {
		return err
	}
	log := logging.New(stdout, "info")
	mock := mockupstream.New(mockupstream.Options{Name: cfg.Name, RequireKey: key, ChunkDelay: cfg.ChunkDelay})

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: accessLog(log, mock), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("mock upstream listening", "addr", ln.Addr().String(), "name", cfg.Name, "require_key", key != "")

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	<-served
	log.Info("mock upstream stopped")
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// accessLog logs one line per request. It never logs bodies or headers.
func accessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		log.Info("request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
			"duration_ms", time.Since(start).Milliseconds())
	})
}

// statusWriter remembers the status written through it. Unwrap lets
// http.ResponseController reach the connection's Flush and Hijack.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
