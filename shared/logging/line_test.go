package logging

import (
	"bytes"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLinesAreSlogs: a line built by hand is byte for byte the line slog writes for
// the same record, with the logger's own attributes, for strings that need escaping
// and floats of every form.
func TestLinesAreSlogs(t *testing.T) {
	strs := []string{"", "plain", `quote " and \ backslash`, "tab\tnew\nline\rcr", "\x00\x1f ctl", "<html> & co",
		"bad utf8 \xff\xfe end", "line sep \u2028 para \u2029", "ünïcødé ✓ 日本"}
	floats := []float64{0, 0.571, 1, 12.345, 1e-7, 3.2e21, 123456789.125, -0.5, 5e-324, math.MaxFloat64}
	for _, s := range strs {
		for _, f := range floats {
			var viaSlog, byHand bytes.Buffer
			base := New(&viaSlog, "info").With("region", "eu", "n", 3, "ok", true)
			now := time.Date(2026, 12, 7, 12, 30, 1, 123456789, time.UTC)
			r := slog.NewRecord(now, slog.LevelWarn, "request", 0)
			r.AddAttrs(slog.String("s", s), slog.Int("status", 200), slog.Float64("f", f))
			if err := base.Handler().Handle(t.Context(), r); err != nil {
				t.Fatal(err)
			}

			h := Lines(New(&byHand, "info").With("region", "eu", "n", 3, "ok", true))
			if h == nil {
				t.Fatal("Lines: nil for a logger with string, int and bool attributes")
			}
			line := h.StartLine(nil, now, slog.LevelWarn, "request")
			line = AppendString(line, "s", s)
			line = AppendInt(line, "status", 200)
			line = AppendFloat(line, "f", f)
			if err := h.WriteLine(line); err != nil {
				t.Fatal(err)
			}
			if byHand.String() != viaSlog.String() {
				t.Errorf("s=%q f=%v:\nby hand %s  slog    %s", s, f, byHand.String(), viaSlog.String())
			}
		}
	}
}

// TestNonFiniteFloats are written as strings (slog writes an error message).
func TestNonFiniteFloats(t *testing.T) {
	for f, want := range map[float64]string{math.NaN(): `,"f":"NaN"`, math.Inf(1): `,"f":"+Inf"`, math.Inf(-1): `,"f":"-Inf"`} {
		if got := string(AppendFloat(nil, "f", f)); got != want {
			t.Errorf("AppendFloat(%v) = %s, want %s", f, got, want)
		}
	}
}

// TestNoLinesAfterAGroupOrAnOddAttribute: Lines is nil where a hand-built line
// could not match slog's.
func TestNoLinesAfterAGroupOrAnOddAttribute(t *testing.T) {
	var b bytes.Buffer
	l := New(&b, "info")
	if Lines(l) == nil {
		t.Fatal("Lines: nil for a plain logger")
	}
	if Lines(l.WithGroup("g")) != nil {
		t.Error("Lines: not nil after WithGroup")
	}
	if Lines(l.With("d", time.Second)) != nil {
		t.Error("Lines: not nil with a duration attribute")
	}
	if Lines(slog.New(slog.NewJSONHandler(&b, nil))) != nil {
		t.Error("Lines: not nil for another handler")
	}
	// Levels still filter slog's records.
	l.Debug("hidden")
	if strings.Contains(b.String(), "hidden") {
		t.Error("a debug record was written at level info")
	}
}

// syncBuffer is a bytes.Buffer safe for the hold timer's goroutine, counting writes.
type syncBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.b.Write(p)
}

func (s *syncBuffer) state() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String(), s.writes
}

// TestHeldLines: a buffered logger holds HoldLine's lines until its hold time ends,
// or another line is written (which goes out after them, in the same write), or
// Flush; holding nothing, each line is its own write at once.
func TestHeldLines(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	line := func(h *Handler, msg string) []byte {
		return AppendString(h.StartLine(nil, now, slog.LevelInfo, msg), "k", "v")
	}

	t.Run("held until another line", func(t *testing.T) {
		var out syncBuffer
		l := NewBuffered(&out, "info", time.Hour)
		h := Lines(l)
		for _, m := range []string{"a", "b"} {
			if err := h.HoldLine(line(h, m)); err != nil {
				t.Fatal(err)
			}
		}
		if got, n := out.state(); n != 0 || got != "" {
			t.Fatalf("held lines written early: %d writes %q", n, got)
		}
		l.Warn("c")
		got, n := out.state()
		if n != 1 {
			t.Fatalf("%d writes, want the held lines and the warning in one", n)
		}
		if lines := strings.Split(strings.TrimSpace(got), "\n"); len(lines) != 3 ||
			!strings.Contains(lines[0], `"msg":"a"`) || !strings.Contains(lines[1], `"msg":"b"`) || !strings.Contains(lines[2], `"msg":"c"`) {
			t.Fatalf("lines out of order: %q", got)
		}
	})
	t.Run("held until the hold time", func(t *testing.T) {
		var out syncBuffer
		h := Lines(NewBuffered(&out, "info", 20*time.Millisecond))
		if err := h.HoldLine(line(h, "a")); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if got, _ := out.state(); strings.Contains(got, `"msg":"a"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the held line was not written after its hold time")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Run("held until Flush, or too many", func(t *testing.T) {
		var out syncBuffer
		l := NewBuffered(&out, "info", time.Hour)
		h := Lines(l)
		if err := h.HoldLine(line(h, "a")); err != nil {
			t.Fatal(err)
		}
		if err := Flush(l); err != nil {
			t.Fatal(err)
		}
		if got, n := out.state(); n != 1 || !strings.Contains(got, `"msg":"a"`) {
			t.Fatalf("after Flush: %d writes %q", n, got)
		}
		long := line(h, strings.Repeat("x", 1000))
		for range holdBytes / 1000 {
			if err := h.HoldLine(append([]byte(nil), long...)); err != nil {
				t.Fatal(err)
			}
		}
		if _, n := out.state(); n != 2 {
			t.Fatalf("%d writes after %d KiB held, want one more", n, holdBytes>>10)
		}
	})
	t.Run("holding nothing", func(t *testing.T) {
		var out syncBuffer
		h := Lines(New(&out, "info"))
		for _, m := range []string{"a", "b"} {
			if err := h.HoldLine(line(h, m)); err != nil {
				t.Fatal(err)
			}
		}
		if got, n := out.state(); n != 2 || strings.Count(got, "\n") != 2 {
			t.Fatalf("%d writes %q, want each line at once", n, got)
		}
	})
}
