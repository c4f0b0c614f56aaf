// Package logging builds the JSON slog loggers that every Portcullis binary uses.
// Loggers are passed explicitly; there is no package-level logger.
package logging

import (
	"io"
	"log/slog"
	"strings"
	"time"
)

// New returns a JSON logger writing to w at level ("debug", "info", "warn", "error").
// Its handler is a *Handler: see Lines for building a line by hand.
func New(w io.Writer, level string) *slog.Logger { return NewBuffered(w, level, 0) }

// NewBuffered is New whose routine lines written with Handler.HoldLine (the data
// plane's info access lines) may wait up to holdFor, or until 32 KiB of them wait,
// to go out in one write; any other line goes out at once, after them. holdFor 0
// holds nothing. Flush the handler (Lines(l).Flush) before the process exits.
func NewBuffered(w io.Writer, level string, holdFor time.Duration) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn", "warning":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(newHandler(w, l, holdFor))
}

// ValidLevel reports whether level is one New understands.
func ValidLevel(level string) bool {
	switch strings.ToLower(level) {
	case "debug", "info", "warn", "warning", "error":
		return true
	}
	return false
}
