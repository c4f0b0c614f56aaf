// Command mockupstream serves the deterministic mock upstream of package mockupstream,
// for the dev stack (make run) and manual testing: OpenAI's API (/v1/chat/completions,
// /v1/completions, /v1/embeddings, /v1/models) and Anthropic's Messages API
// (POST /v1/messages, which takes the key in x-api-key and requires anthropic-version).
// Each deployment of the dev stack has the base URL <mock>/d/<deployment>, so that a
// failure can be injected into one deployment at a time through the control API, on a
// second listener (-control-listen, 127.0.0.1:9101 by default):
//
//	curl -s -XPOST http://127.0.0.1:9101/mock/fail -d '{"deployment":"openai-eu","mode":"5xx","for_seconds":60}'
//	curl -s http://127.0.0.1:9101/mock/fail              # the failures in force
//	curl -s -XDELETE http://127.0.0.1:9101/mock/fail     # end them all
//
// The modes are 5xx, 429 (with Retry-After: 1), hang (no answer until the caller gives
// up), cut_stream (the answer breaks off midway) and none (ends the deployment's
// failure). The control API has no authentication: keep it on loopback.
//
// Like a provider, the mock checks keys once it has one to check: the key of
// -require-key-file, the keys of -accept-keys-file (one a line; blank lines and lines
// starting with '#' are skipped), or a key the admin API or the control API accepted.
// A request without an accepted key then gets 401 in the provider's schema, its key
// masked. The accept-keys file is looked at before each request (and control call):
// when its modification time or size changed, it is re-read, the keys new to it
// accepted and the keys gone from it revoked. A file that cannot be read, is empty or
// has a malformed line is ignored with a warning, keeping the keys last read; rewrite
// it by renaming a new file over it. The control API accepts and revokes keys too, and
// counts them, never showing one:
//
//	curl -s -XPOST http://127.0.0.1:9101/mock/keys -d '{"accept":"sk-new..."}'
//	curl -s -XPOST http://127.0.0.1:9101/mock/keys -d '{"accept":"sk-old...","until":"2030-01-01T00:00:00Z"}'
//	curl -s -XPOST http://127.0.0.1:9101/mock/keys -d '{"revoke":"sk-old..."}'
//	curl -s http://127.0.0.1:9101/mock/keys              # {"accepted":2}
//	curl -s 'http://127.0.0.1:9101/mock/requests?limit=3' # the last requests: path, model, texts
//
// With -admin-key-file it also serves the part of OpenAI's organization admin API that
// the openai_admin minter uses, under /v1/organization/ (and each /d/<deployment>/):
// POST .../projects/{project}/service_accounts mints a key the mock accepts at once,
// DELETE .../service_accounts/{id} revokes it, GET lists the accounts without keys.
// It takes "Authorization: Bearer <admin key>"; without the flag it answers 404.
//
// Its memory stays bounded however long it runs: it keeps the records of the last
// mockupstream.DefaultRecordLimit requests only.
//
// It logs one JSON line per request (method, path, status, duration; never a body or a
// key), per control call (naming at most the deployment and the mode, or a key's
// action and fingerprint) and per read of the accept-keys file (counts only).
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
	if err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr); err != nil {
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
	Listen string
	// ControlListen is where the control API listens; "" turns it off.
	ControlListen  string
	RequireKeyFile string
	// AcceptKeysFile lists accepted keys, one a line; it is re-read when it changes.
	AcceptKeysFile string
	// AdminKeyFile holds the admin API's key; "" turns that API off.
	AdminKeyFile string
	Name         string
	ChunkDelay   time.Duration
}

// Environment variables, one per flag. They are not PORTCULLIS_LISTEN and friends, so
// that the mock and a gateway can share one environment.
const (
	envListen         = "PORTCULLIS_MOCK_LISTEN"
	envControlListen  = "PORTCULLIS_MOCK_CONTROL_LISTEN"
	envRequireKeyFile = "PORTCULLIS_MOCK_REQUIRE_KEY_FILE"
	envAcceptKeysFile = "PORTCULLIS_MOCK_ACCEPT_KEYS_FILE"
	envAdminKeyFile   = "PORTCULLIS_MOCK_ADMIN_KEY_FILE"
	envName           = "PORTCULLIS_MOCK_NAME"
	envChunkDelay     = "PORTCULLIS_MOCK_CHUNK_DELAY"
)

// defaultControlListen is the control API's address unless configured otherwise.
const defaultControlListen = "127.0.0.1:9101"

// loadConfig reads the environment through lookupEnv, then the flags. An empty
// variable counts as unset, except PORTCULLIS_MOCK_CONTROL_LISTEN, which set empty
// turns the control API off.
func loadConfig(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (config, error) {
	env := func(key, def string) string {
		if v, _ := lookupEnv(key); v != "" {
			return v
		}
		return def
	}
	controlDefault := defaultControlListen
	if v, ok := lookupEnv(envControlListen); ok {
		controlDefault = v
	}
	var c config
	var problems []error
	fs := flag.NewFlagSet("mockupstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Listen, "listen", env(envListen, "127.0.0.1:9100"), "host:port to serve on (env "+envListen+")")
	fs.StringVar(&c.ControlListen, "control-listen", controlDefault,
		"host:port of the control API (/mock/fail, /mock/keys), which has no authentication: keep it on loopback; empty turns it off (env "+envControlListen+")")
	fs.StringVar(&c.RequireKeyFile, "require-key-file", env(envRequireKeyFile, ""),
		"file whose trimmed content is an accepted key (Bearer, or x-api-key on /v1/messages); with no key at all, any request is accepted (env "+envRequireKeyFile+")")
	fs.StringVar(&c.AcceptKeysFile, "accept-keys-file", env(envAcceptKeysFile, ""),
		"file of accepted keys, one a line ('#' starts a comment), re-read when its modification time or size changes (env "+envAcceptKeysFile+")")
	fs.StringVar(&c.AdminKeyFile, "admin-key-file", env(envAdminKeyFile, ""),
		"file whose trimmed content is the key of the OpenAI admin API subset (project service accounts); empty turns that API off (env "+envAdminKeyFile+")")
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
	if c.ControlListen != "" {
		if _, _, err := net.SplitHostPort(c.ControlListen); err != nil {
			problems = append(problems, fmt.Errorf("control-listen %q: want host:port, or empty to turn the control API off", c.ControlListen))
		}
	}
	if d, err := time.ParseDuration(*delay); err != nil || d < 0 {
		problems = append(problems, fmt.Errorf("chunk-delay %q: want a non-negative duration such as 20ms", *delay))
	} else {
		c.ChunkDelay = d
	}
	return c, errors.Join(problems...)
}

// readKey returns the trimmed content of path, the file of the flag named flagName,
// or "" when path is empty.
func readKey(flagName, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		return "", fmt.Errorf("%s %q: empty", flagName, path)
	}
	return key, nil
}

func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	cfg, err := loadConfig(args, lookupEnv, stderr)
	if err != nil {
		return err
	}
	key, err := readKey("require-key-file", cfg.RequireKeyFile)
	if err != nil {
		return err
	}
	adminKey, err := readKey("admin-key-file", cfg.AdminKeyFile)
	if err != nil {
		return err
	}
	log := logging.New(stdout, "info")
	// Nothing reads the records here: the default ring keeps the memory bounded however
	// long make run or a benchmark lasts.
	mock := mockupstream.New(mockupstream.Options{Name: cfg.Name, RequireKey: key, AdminKey: adminKey, ChunkDelay: cfg.ChunkDelay,
		RecordLimit: mockupstream.DefaultRecordLimit})
	keys, err := loadKeyFile(cfg.AcceptKeysFile, mock, log)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, mock, keys, log)
}

// serve serves mock on cfg.Listen, and its control API on cfg.ControlListen unless
// that is empty, until ctx ends or a listener fails. It then shuts both down, releasing
// the requests FailHang holds, within 5 s. Unless keys is nil, both re-read its file
// first when it changed.
func serve(ctx context.Context, cfg config, mock *mockupstream.Server, keys *keyFile, log *slog.Logger) error {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: accessLog(log, keys.refreshing(mock)), ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(mock.Close) // hung requests must not hold the shutdown up
	servers := []*http.Server{srv}
	listeners := []net.Listener{ln}
	attrs := []any{"addr", ln.Addr().String(), "name", cfg.Name, "require_key", cfg.RequireKeyFile != "",
		"accept_keys_file", cfg.AcceptKeysFile, "accepted_keys", mock.AcceptedKeys(), "admin_api", cfg.AdminKeyFile != ""}
	if cfg.ControlListen != "" {
		cln, err := net.Listen("tcp", cfg.ControlListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("control-listen: %w", err)
		}
		servers = append(servers, &http.Server{Handler: keys.refreshing(newControl(mock, log)), ReadHeaderTimeout: 10 * time.Second})
		listeners = append(listeners, cln)
		attrs = append(attrs, "control_addr", cln.Addr().String())
		if !isLoopback(cln.Addr()) {
			log.Warn("the control API listens beyond loopback and has no authentication: anyone who reaches it can make the mock fail",
				"control_addr", cln.Addr().String())
		}
	}

	served := make(chan error, len(servers))
	for i, s := range servers {
		go func() { served <- s.Serve(listeners[i]) }()
	}
	log.Info("mock upstream listening", attrs...)

	var serveErr error
	pending := len(servers)
	select {
	case err := <-served: // a listener failed: stop the other one too
		serveErr = fmt.Errorf("serve: %w", err)
		pending--
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var shutdownErrs []error
	for _, s := range servers {
		if err := s.Shutdown(shutdownCtx); err != nil {
			shutdownErrs = append(shutdownErrs, fmt.Errorf("shutdown: %w", err))
		}
	}
	for ; pending > 0; pending-- {
		<-served
	}
	log.Info("mock upstream stopped")
	return errors.Join(append([]error{serveErr}, shutdownErrs...)...)
}

// isLoopback reports whether addr is a loopback IP address.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
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
