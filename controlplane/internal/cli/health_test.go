package cli

import (
	"errors"
	"strings"
	"testing"
)

func TestDeploymentsHealth(t *testing.T) {
	c := newCLI(t)
	// No data-plane worker runs here: the fleet is empty, but the call is the real one.
	out := c.mustRun("deployments", "health")
	if !strings.Contains(out, `"workers": 0`) || !strings.Contains(out, `"data": []`) {
		t.Fatalf("stdout: %s", out)
	}
	if _, errOut, err := c.run("deployments", "health", "extra"); !errors.Is(err, ErrUsage) || !strings.Contains(errOut, "usage: portcullis deployments health") {
		t.Fatalf("an extra argument: err %v, stderr %s", err, errOut)
	}
}
