package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
)

// buildDataplane builds ./dataplane/cmd/dataplane into dir and returns the binary's path.
func buildDataplane(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "dataplane")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./dataplane/cmd/dataplane")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./dataplane/cmd/dataplane: %w\n%s", err, out)
	}
	return bin, nil
}
