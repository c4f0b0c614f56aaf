package logging

import (
	"context"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/portcullis-gw/portcullis/shared/jsontext"
)

// Handler is the handler New builds: slog's JSON handler, and beside it a way for a
// hot path to write a line it formatted itself (StartLine, the Append functions,
// WriteLine) at a fraction of slog's cost. Both kinds of line go through one lock,
// so they never interleave. A line built by hand has the fields slog would write
// for the same record: time, level, msg, the attributes given to WithAttrs, then
// its own.
type Handler struct {
	json slog.Handler
	w    *lockedWriter
	// with is the JSON of the attributes given to WithAttrs, each led by a comma;
	// byHand is false once a group was opened or an attribute of a kind the
	// Append functions do not write was given, and then Lines returns nil.
	with   []byte
	byHand bool
}

var _ slog.Handler = (*Handler)(nil)

// lockedWriter serialises writes: each Write is one whole line. With holdFor set
// (NewBuffered), a line written with hold waits in buf until the next flush: when
// buf passes holdBytes, holdFor after the first line held, or when any other line
// is written, which goes out after the held ones, in one write.
type lockedWriter struct {
	mu      sync.Mutex
	w       io.Writer
	holdFor time.Duration // 0: nothing is held
	buf     []byte
	timer   *time.Timer
}

// holdBytes is the most a buffered logger holds before it writes.
const holdBytes = 32 << 10

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) == 0 {
		return l.w.Write(p)
	}
	l.buf = append(l.buf, p...)
	return len(p), l.flushLocked()
}

// hold writes p, or with holdFor set keeps it for the next flush.
func (l *lockedWriter) hold(p []byte) error {
	if l.holdFor <= 0 {
		_, err := l.Write(p)
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	first := len(l.buf) == 0
	l.buf = append(l.buf, p...)
	switch {
	case len(l.buf) >= holdBytes:
		return l.flushLocked()
	case !first:
	case l.timer == nil:
		l.timer = time.AfterFunc(l.holdFor, func() { _ = l.flush() })
	default:
		l.timer.Reset(l.holdFor)
	}
	return nil
}

func (l *lockedWriter) flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.flushLocked()
}

func (l *lockedWriter) flushLocked() error {
	if len(l.buf) == 0 {
		return nil
	}
	_, err := l.w.Write(l.buf)
	l.buf = l.buf[:0]
	if cap(l.buf) > 4*holdBytes { // one burst of long lines does not keep its memory
		l.buf = nil
	}
	return err
}

func newHandler(w io.Writer, level slog.Leveler, holdFor time.Duration) *Handler {
	lw := &lockedWriter{w: w, holdFor: holdFor}
	return &Handler{json: slog.NewJSONHandler(lw, &slog.HandlerOptions{Level: level}), w: lw, byHand: true}
}

func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.json.Enabled(ctx, l) }

func (h *Handler) Handle(ctx context.Context, r slog.Record) error { return h.json.Handle(ctx, r) }

func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := &Handler{json: h.json.WithAttrs(attrs), w: h.w, byHand: h.byHand}
	if n.byHand {
		n.with = append([]byte(nil), h.with...)
		for _, a := range attrs {
			var ok bool
			if n.with, ok = appendAttr(n.with, a); !ok {
				n.byHand, n.with = false, nil
				break
			}
		}
	}
	return n
}

func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{json: h.json.WithGroup(name), w: h.w}
}

// Lines returns h when lines can be built by hand for it, nil when not: a caller
// falls back on slog then.
func Lines(l *slog.Logger) *Handler {
	if h, ok := l.Handler().(*Handler); ok && h.byHand {
		return h
	}
	return nil
}

// StartLine appends the start of a line to buf: its time, level and message, and
// the logger's own attributes. Append fields, then WriteLine.
func (h *Handler) StartLine(buf []byte, t time.Time, level slog.Level, msg string) []byte {
	buf = append(buf, `{"time":"`...)
	buf = t.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","level":`...)
	buf = jsontext.AppendString(buf, level.String())
	buf = append(buf, `,"msg":`...)
	buf = jsontext.AppendString(buf, msg)
	return append(buf, h.with...)
}

// WriteLine ends the line in buf and writes it. buf may be reused afterwards.
func (h *Handler) WriteLine(buf []byte) error {
	_, err := h.w.Write(append(buf, '}', '\n'))
	return err
}

// HoldLine is WriteLine for a frequent, routine line (an access log line at info):
// a logger made by NewBuffered may hold it up to its hold time, so that many go
// out in one write. Any line written otherwise goes out after it, never before.
func (h *Handler) HoldLine(buf []byte) error {
	return h.w.hold(append(buf, '}', '\n'))
}

// Flush writes the lines a buffered logger holds.
func (h *Handler) Flush() error { return h.w.flush() }

// Flush writes the lines l holds, if l is a logger of this package's.
func Flush(l *slog.Logger) error {
	if h, ok := l.Handler().(*Handler); ok {
		return h.Flush()
	}
	return nil
}

// AppendString appends the field key with a string value.
func AppendString(buf []byte, key, value string) []byte {
	buf = appendKey(buf, key)
	return jsontext.AppendString(buf, value)
}

// AppendInt appends the field key with an integer value.
func AppendInt(buf []byte, key string, value int64) []byte {
	return strconv.AppendInt(appendKey(buf, key), value, 10)
}

// AppendFloat appends the field key with a number, formatted as encoding/json (and
// so slog) formats a float64; NaN and infinities, which JSON has no number for, as
// the strings "NaN", "+Inf" and "-Inf" (where slog writes an error message).
func AppendFloat(buf []byte, key string, value float64) []byte {
	return appendFloat(appendKey(buf, key), value)
}

func appendKey(buf []byte, key string) []byte {
	buf = append(buf, ',')
	buf = jsontext.AppendString(buf, key)
	return append(buf, ':')
}

// appendAttr appends a's field, reporting false for a kind the Append functions do
// not write.
func appendAttr(buf []byte, a slog.Attr) ([]byte, bool) {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return AppendString(buf, a.Key, v.String()), true
	case slog.KindInt64:
		return AppendInt(buf, a.Key, v.Int64()), true
	case slog.KindUint64:
		return strconv.AppendUint(appendKey(buf, a.Key), v.Uint64(), 10), true
	case slog.KindFloat64:
		return AppendFloat(buf, a.Key, v.Float64()), true
	case slog.KindBool:
		return strconv.AppendBool(appendKey(buf, a.Key), v.Bool()), true
	}
	return buf, false
}

func appendFloat(buf []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(buf, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(buf, `"+Inf"`...)
	case math.IsInf(f, -1):
		return append(buf, `"-Inf"`...)
	}
	// encoding/json's rule: %f-like unless the exponent is small or large.
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(buf)
	buf = strconv.AppendFloat(buf, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		n := len(buf) - start
		if n >= 4 && buf[len(buf)-4] == 'e' && buf[len(buf)-3] == '-' && buf[len(buf)-2] == '0' {
			buf[len(buf)-2] = buf[len(buf)-1]
			buf = buf[:len(buf)-1]
		}
	}
	return buf
}
