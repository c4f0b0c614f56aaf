package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/controlplane/internal/cli"
	"github.com/portcullis-gw/portcullis/shared/apierr"
)

func TestExitCode(t *testing.T) {
	apiErr := &cli.APIError{Status: 422, Code: apierr.ValidationFailed, Message: "invalid tenant",
		Fields: []apierr.FieldError{{Field: "name", Message: "must be a slug"}}}
	tests := []struct {
		name       string
		err        error
		wantCode   int
		wantStderr string
	}{
		{"success", nil, 0, ""},
		{"bare usage", cli.ErrUsage, 2, ""},
		{"usage with reason", fmt.Errorf("%w: --client is required", cli.ErrUsage), 2, "portcullis: usage error: --client is required\n"},
		{"api error", apiErr, 1, "validation_failed: invalid tenant\n  name: must be a slug\n"},
		{"other", errors.New("boom"), 1, "portcullis: boom\n"},
		{"diff with changes", cli.ErrChanges, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if got := exitCode(tt.err, &stderr); got != tt.wantCode {
				t.Fatalf("exit code %d, want %d", got, tt.wantCode)
			}
			if stderr.String() != tt.wantStderr {
				t.Fatalf("stderr %q, want %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

func TestRunWithoutCommandPrintsUsage(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), nil, noEnv, io.Discard, &stderr)
	if !errors.Is(err, cli.ErrUsage) {
		t.Fatalf("err = %v, want usage error", err)
	}
	if !strings.Contains(stderr.String(), "tokens mint --client") {
		t.Fatalf("usage not printed: %q", stderr.String())
	}
}

// noEnv is an empty environment, so that a test does not depend on the process's.
func noEnv(string) string { return "" }
