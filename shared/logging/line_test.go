package logging

import (
	"bytes"
	"log/slog"
	"math"
	"strings"
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
