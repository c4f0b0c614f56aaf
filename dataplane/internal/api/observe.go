package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/portcullis-gw/portcullis/shared/audit"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
	"github.com/portcullis-gw/portcullis/shared/httpmetrics"
	"github.com/portcullis-gw/portcullis/shared/logging"
)

// requestInfo collects what the access log line says about one request. Handlers
// fill it in as they learn more; it never holds a token or a prompt.
type requestInfo struct {
	// id is the gateway's own id of the request, the only dedupe key of its audit
	// event; clientRequestID is the client's X-Request-Id when it is sane, kept for
	// correlation only.
	id, clientRequestID string
	clientID            string
	model               string
	deployment          string
	// For the audit event.
	tenant, operation, provider string
	stream                      bool
	keyVersion                  int
	upstreamLatency             time.Duration
	promptHash                  string
	tokensIn, tokensOut         int64
	route                       policycache.Route // the route that answered, for its prices
	// fallback is the model the request fell back to, and why (circuit_open,
	// error_rate, or the code of the primary's last failure: see forwardWithFallback);
	// empty when it did not.
	fallback, fallbackReason string
	errCode                  string
	// flags are the guardrails' findings, counted by family, type, direction and
	// action, for the audit event.
	flags []audit.Flag
	// unaudited: the request gets no audit event (a client refused at the door of a
	// region its residency does not allow).
	unaudited bool
	errReason string
	errCause  string

	// attempts counts the request's upstream attempts (the fallback's included);
	// upstreamTime is their time, from sending each to the end of its answer's
	// relay, plus the backoff waits between them; firstEvent is when the first
	// event of a streamed answer was sent to the client (zero: none). For the
	// latency metrics.
	attempts     int
	upstreamTime time.Duration
	firstEvent   time.Time
	// whole marks an answer written whole with its Content-Length (copyAnswer):
	// observe flushes it as soon as the handler is done, before its own work.
	whole bool
}

const infoKey = "portcullis.request"

// routeUnmatched is the route label of requests no route matched.
const routeUnmatched = "unmatched"

// info returns the request's info; observe always sets it.
func info(c echo.Context) *requestInfo {
	if ri, ok := c.Get(infoKey).(*requestInfo); ok {
		return ri
	}
	ri := &requestInfo{}
	c.Set(infoKey, ri)
	return ri
}

// observe is the outermost middleware: it assigns the request id, renders any
// error, and then writes the one access log line and the request metrics.
func (s *server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		req := c.Request()
		ri := &requestInfo{id: newRequestID()}
		if id := req.Header.Get(HeaderRequestID); validRequestID(id) {
			ri.clientRequestID = id
		}
		c.Set(infoKey, ri)
		h := c.Response().Header()
		h.Set(HeaderRequestID, ri.id)
		if ri.clientRequestID != "" {
			h.Set(HeaderClientRequestID, ri.clientRequestID)
		}
		h.Set("X-Content-Type-Options", "nosniff") // every answer is JSON or an event stream: never sniffed
		if s.ExposeRoutingHeaders {
			h.Set(HeaderRegion, s.Region)
		}
		respHash := s.hashResponse(c)
		span := s.startRequestSpan(c, ri)

		err := s.auditAccepting()
		if err == nil {
			err = next(c)
		}
		if err != nil {
			c.Error(err)
		} else if ri.whole {
			// The handler is done (its limits settled, its breaker told): the client
			// gets the answer now, not after the log line and the audit event.
			_ = http.NewResponseController(c.Response()).Flush()
		}

		elapsed := time.Since(start)
		status := c.Response().Status
		route := c.Path()
		if errors.Is(err, echo.ErrNotFound) {
			route = routeUnmatched // keeps the metric's label set bounded
		}
		s.Metrics.Observe(route, req.Method, status, elapsed)
		s.latency.observe(route, ri, start, elapsed)
		endRequestSpan(span, ri, status)
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelWarn
		}
		tail := make([]logField, 0, 10)
		tail = append(tail, logField{"client_id", ri.clientID}, logField{"model", ri.model}, logField{"deployment", ri.deployment})
		if ri.fallback != "" {
			tail = append(tail, logField{"fallback", ri.fallback}, logField{"fallback_reason", ri.fallbackReason})
		}
		if ri.errCode != "" {
			tail = append(tail, logField{"error_code", ri.errCode})
		}
		if ri.errReason != "" {
			tail = append(tail, logField{"reason", ri.errReason})
		}
		if ri.errCause != "" {
			tail = append(tail, logField{"error", ri.errCause})
		}
		if id := span.TraceID(); id != "" {
			tail = append(tail, logField{"trace_id", id})
		}
		s.logAccess(req.Context(), level, accessLine{
			head: [...]logField{{"request_id", ri.id}, {"client_request_id", ri.clientRequestID},
				{"method", httpmetrics.Method(req.Method)}, {"route", route}},
			status: status, latencyMS: float64(elapsed.Microseconds()) / 1000, tail: tail,
		})
		if s.Audit != nil && audited(route) && !ri.unaudited {
			s.audit(c, ri, start, elapsed, respHash)
		}
		return nil
	}
}

// logField is a string field of the access log line.
type logField struct{ key, value string }

// accessLine is the access log line of a request: its head fields, status,
// latency_ms, and its tail fields, in that order.
type accessLine struct {
	head      [4]logField
	status    int
	latencyMS float64
	tail      []logField
}

// lineBufs are the buffers access log lines are built in.
var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// logAccess writes the request's access log line: built by hand when the logger
// allows it (logging.Lines), which costs a fraction of slog's formatting, else
// through slog. Both write the same fields.
func (s *server) logAccess(ctx context.Context, level slog.Level, l accessLine) {
	if s.lines == nil {
		attrs := make([]slog.Attr, 0, len(l.head)+2+len(l.tail))
		for _, f := range l.head {
			attrs = append(attrs, slog.String(f.key, f.value))
		}
		attrs = append(attrs, slog.Int("status", l.status), slog.Float64("latency_ms", l.latencyMS))
		for _, f := range l.tail {
			attrs = append(attrs, slog.String(f.key, f.value))
		}
		s.Log.LogAttrs(ctx, level, "request", attrs...)
		return
	}
	if !s.lines.Enabled(ctx, level) {
		return
	}
	bp := lineBufs.Get().(*[]byte)
	defer lineBufs.Put(bp)
	b := s.lines.StartLine((*bp)[:0], time.Now(), level, "request")
	for _, f := range l.head {
		b = logging.AppendString(b, f.key, f.value)
	}
	b = logging.AppendInt(b, "status", int64(l.status))
	b = logging.AppendFloat(b, "latency_ms", l.latencyMS)
	for _, f := range l.tail {
		b = logging.AppendString(b, f.key, f.value)
	}
	if level < slog.LevelWarn {
		_ = s.lines.HoldLine(b)
	} else {
		_ = s.lines.WriteLine(b)
	}
	*bp = b
}

// newRequestID returns a fresh request id: 128 random bits in hex. The gateway
// owns its request ids; a client's X-Request-Id never becomes one, so no client
// can make two requests share an audit dedupe key (or claim another's in advance).
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validRequestID, for a client's X-Request-Id, matches ^[A-Za-z0-9._:-]{1,128}$.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
