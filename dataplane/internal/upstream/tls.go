package upstream

import (
	"crypto/tls"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

// tlsConfig builds the client TLS configuration of a deployment (see
// policy.TLS.ClientConfig), with certificate verification off only where the
// deployment says so.
func tlsConfig(p policy.TLS) (*tls.Config, error) {
	cfg, err := p.ClientConfig()
	if err != nil {
		return nil, err
	}
	cfg.InsecureSkipVerify = !p.Verify //nolint:gosec // verify is the deployment's explicit choice
	return cfg, nil
}

// errPinMismatch is the handshake error of a certificate chain that matches none of
// the deployment's pins.
var errPinMismatch = policy.ErrPinMismatch
