package natsconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/portcullis-gw/portcullis/shared/config"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/secretfile"
)

// The configuration keys of the credentials and CA files, the same in every binary.
const (
	KeyCreds    = "nats-creds"
	KeyCAFile   = "nats-ca-file"
	KeyCertFile = "nats-cert-file"
	KeyKeyFile  = "nats-key-file"
)

// Flags declares KeyCreds and KeyCAFile on l, writing into creds and caFile. Both
// default to empty (no credentials; the system's roots if the server offers TLS).
func Flags(l *config.Loader, creds, caFile *string) {
	l.String(creds, KeyCreds, "", "NATS user credentials file (.creds: user JWT and nkey seed); keeps secrets out of the NATS URL")
	l.String(caFile, KeyCAFile, "", "PEM file of the CA certificates that sign the NATS servers' certificates; requires TLS")
}

// ClientCertFlags declares KeyCertFile and KeyKeyFile on l, writing into cert and
// key: the client certificate a NATS server that verifies clients asks for. Both
// default to empty (no client certificate).
func ClientCertFlags(l *config.Loader, cert, key *string) {
	l.String(cert, KeyCertFile, "", "PEM client certificate for NATS servers that verify clients (tls verify: true); needs nats-key-file")
	l.String(key, KeyKeyFile, "", "PEM private key of nats-cert-file; readable by its owner only")
}

// Validate adds a problem to p for each of the files in o that is set but cannot be
// used: unreadable, not a user credentials file, or holding no PEM certificate. It
// names the file, never its content. URL is checked by each binary.
func (o Options) Validate(p *config.Problems) {
	if o.CredsFile != "" {
		if reason := checkCreds(o.CredsFile, time.Now()); reason != "" {
			p.Add(KeyCreds, o.CredsFile, reason)
		}
	}
	if o.CAFile != "" {
		if reason := checkCAFile(o.CAFile); reason != "" {
			p.Add(KeyCAFile, o.CAFile, reason)
		}
	}
	switch {
	case o.CertFile != "" && o.KeyFile == "":
		p.Add(KeyKeyFile, "", "required with "+config.EnvName(KeyCertFile))
	case o.CertFile == "" && o.KeyFile != "":
		p.Add(KeyCertFile, "", "required with "+config.EnvName(KeyKeyFile))
	case o.CertFile != "":
		if reason := checkClientCert(o.CertFile, o.KeyFile); reason != "" {
			p.Add(KeyKeyFile, o.KeyFile, reason)
		}
	}
}

// checkClientCert is why the certificate and key files are no client
// certificate, or "".
func checkClientCert(certFile, keyFile string) string {
	key, err := secretfile.Read(config.EnvName(KeyKeyFile), keyFile, 1<<20)
	if me, ok := errors.AsType[*secretfile.ModeError](err); ok {
		return fmt.Sprintf("has mode %04o: a private key must not be readable by group or others (chmod 600 it)", uint32(me.Mode))
	}
	if err != nil {
		return "cannot read the key file: " + pathErrReason(err)
	}
	cert, err := os.ReadFile(certFile)
	if err != nil {
		return "cannot read the certificate " + certFile + ": " + pathErrReason(err)
	}
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		return "not the key of the certificate " + certFile + " (or not PEM)"
	}
	return ""
}

func checkCreds(path string, now time.Time) string {
	data, err := secretfile.Read(config.EnvName(KeyCreds), path, 1<<20)
	if me, ok := errors.AsType[*secretfile.ModeError](err); ok {
		return fmt.Sprintf("has mode %04o: the nkey seed it holds must not be readable by group or others (chmod 600 it)", uint32(me.Mode))
	}
	if err != nil {
		return "cannot read the credentials file: " + pathErrReason(err)
	}
	token, err := jwt.ParseDecoratedJWT(data)
	if err != nil {
		return "not a NATS credentials file: no user JWT"
	}
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return "not a NATS credentials file: no valid user JWT"
	}
	if claims.Expires != 0 && now.Unix() >= claims.Expires {
		return "the user JWT expired at " + time.Unix(claims.Expires, 0).UTC().Format(time.RFC3339)
	}
	kp, err := jwt.ParseDecoratedUserNKey(data)
	if err != nil {
		return "not a NATS credentials file: no user nkey seed"
	}
	defer kp.Wipe()
	if pub, err := kp.PublicKey(); err != nil || pub != claims.Subject {
		return "the nkey seed does not belong to the user JWT"
	}
	return ""
}

// CredsUserName is the name in the user JWT of the credentials file at path when it
// is a single subject token, or "" (no file, or no such name).
func CredsUserName(path string) string {
	claims := credsClaims(path)
	if claims == nil || claims.Name == "" || natsnames.Token(claims.Name) != claims.Name {
		return ""
	}
	return claims.Name
}

// jsAPIPrefixTag is the user JWT tag that says where the user's account reaches
// JetStream (natsauth.JSAPIPrefixTag: an account without JetStream of its own
// imports the calls it may make under a prefix).
const jsAPIPrefixTag = "js-api-prefix:"

// CredsJSAPIPrefix is the JetStream API prefix the credentials at path name in
// their user JWT's tags, or "" for the default ($JS.API).
func CredsJSAPIPrefix(path string) string {
	claims := credsClaims(path)
	if claims == nil {
		return ""
	}
	for _, tag := range claims.Tags {
		if prefix, ok := strings.CutPrefix(tag, jsAPIPrefixTag); ok && prefix != "" {
			return prefix
		}
	}
	return ""
}

// credsClaims are the user claims of the credentials file at path, nil when it has
// none.
func credsClaims(path string) *jwt.UserClaims {
	if path == "" {
		return nil
	}
	data, err := secretfile.Read(config.EnvName(KeyCreds), path, 1<<20)
	if err != nil {
		return nil
	}
	token, err := jwt.ParseDecoratedJWT(data)
	if err != nil {
		return nil
	}
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return nil
	}
	return claims
}

func checkCAFile(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "cannot read the CA file: " + pathErrReason(err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return "holds no PEM certificate"
	}
	return ""
}

// pathErrReason is the cause of a file error without the path, which the problem
// already shows.
func pathErrReason(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
