// Package logging builds the JSON slog loggers that every Portcullis binary uses.
// Loggers are passed explicitly; there is no package-level logger.
package logging

import (
	"io"
	"log/slog"
	"strings"
)

// New returns a JSON logger writing to w at level ("debug", "info", "warn", "error").
// Its handler is a *Handler: see Lines for building a line by hand.
func New(w io.Writer, level string) *slog.Logger {
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
	return slog.New(newHandler(w, l))
}

// ValidLevel reports whether level is one New understands.
func ValidLevel(level string) bool {
	switch strings.ToLower(level) {
	case "debug", "info", "warn", "warning", "error":
		return true
	}
	return false
}
