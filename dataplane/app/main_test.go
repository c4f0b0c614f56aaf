package app_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/signing"
)

// policySigner signs the snapshots the tests publish, as the control plane's policy
// signing key would; policyPublicKeys is its public key file, every test data plane's
// PORTCULLIS_POLICY_PUBLIC_KEYS.
var (
	policySigner     *signing.Signer
	policyPublicKeys string
)

// TestMain makes the policy signing key, and fails the package if a test leaves
// goroutines behind.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dataplane-app-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	key := filepath.Join(dir, "policy-signing-key.pem")
	if policySigner, _, err = signing.LoadOrCreate(key); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	policyPublicKeys = signing.PublicPath(key)
	required["PORTCULLIS_POLICY_PUBLIC_KEYS"] = policyPublicKeys
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// sealed is an encoded snapshot signed with the tests' policy signing key.
func sealed(encoded []byte) []byte { return policy.Seal(encoded, policySigner) }
