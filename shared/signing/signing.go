// Package signing holds the control plane's Ed25519 signing keys and their
// verification by key id: the policy snapshots data planes apply and the audit
// checkpoints exports carry are signed with them (docs/design.md §3 and §7). A private key
// lives in a PEM (PKCS #8) file that only its owner may read; public keys are PEM
// (PKIX) files, several in one file or list for a rollover.
package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/portcullis-gw/portcullis/shared/secretfile"
)

// ErrUnknownKey is returned by Verify for a key id no configured public key has.
var ErrUnknownKey = errors.New("signed with an unknown key")

// ErrBadSignature is returned by Verify when the signature does not match.
var ErrBadSignature = errors.New("bad signature")

// KeyID names a public key: "ed25519:" and the first 16 hex digits of the SHA-256 of
// the key's bytes.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}

// Signer signs with one private key.
type Signer struct {
	key ed25519.PrivateKey
	id  string
}

// NewSigner returns a signer of key.
func NewSigner(key ed25519.PrivateKey) *Signer {
	return &Signer{key: key, id: KeyID(key.Public().(ed25519.PublicKey))}
}

// Generate returns a signer of a new random key.
func Generate() (*Signer, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate an Ed25519 key: %w", err)
	}
	return NewSigner(key), nil
}

// KeyID is the id of the signer's public key.
func (s *Signer) KeyID() string { return s.id }

// PublicKey is the signer's public key.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Sign signs msg.
func (s *Signer) Sign(msg []byte) []byte { return ed25519.Sign(s.key, msg) }

// PublicPEM is the signer's public key as a PEM (PKIX) block.
func (s *Signer) PublicPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(s.PublicKey())
	if err != nil {
		panic(err) // an Ed25519 public key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// privatePEM is the signer's private key as a PEM (PKCS #8) block.
func (s *Signer) privatePEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(s.key)
	if err != nil {
		panic(err) // an Ed25519 private key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Load reads the private key file at path. The file must not be readable by group or
// others.
func Load(path string) (*Signer, error) {
	if err := secretfile.Check("signing key", path); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: not a PEM PRIVATE KEY", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	key, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: a %T, not an Ed25519 key", path, parsed)
	}
	return NewSigner(key), nil
}

// LoadOrCreate reads the private key file at path, or when there is none generates a
// key and writes it there (mode 0600, in a directory made 0700 if missing), with its
// public key beside it as path's name with ".pub" for ".pem" (or added). created
// reports whether it generated the key.
func LoadOrCreate(path string) (s *Signer, created bool, err error) {
	s, err = Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, false, err
	}
	if s, err = Generate(); err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("create the signing key's directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("write signing key: %w", err)
	}
	if _, err := f.Write(s.privatePEM()); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("write signing key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, false, fmt.Errorf("write signing key: %w", err)
	}
	if err := os.WriteFile(PublicPath(path), s.PublicPEM(), 0o644); err != nil {
		return nil, false, fmt.Errorf("write public key: %w", err)
	}
	return s, true, nil
}

// PublicPath is where LoadOrCreate writes the public key of the private key file at
// path.
func PublicPath(path string) string { return strings.TrimSuffix(path, ".pem") + ".pub" }

// Verifier checks signatures against a set of public keys, by key id.
type Verifier struct {
	keys map[string]ed25519.PublicKey
}

// ParsePublicKeys parses every PEM PUBLIC KEY block of data.
func ParsePublicKeys(data []byte) (*Verifier, error) {
	v := &Verifier{keys: map[string]ed25519.PublicKey{}}
	if err := v.add(data); err != nil {
		return nil, err
	}
	if len(v.keys) == 0 {
		return nil, errors.New("no PEM PUBLIC KEY block")
	}
	return v, nil
}

// LoadPublicKeys reads the public keys of every file in paths.
func LoadPublicKeys(paths ...string) (*Verifier, error) {
	v := &Verifier{keys: map[string]ed25519.PublicKey{}}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if err := v.add(data); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	if len(v.keys) == 0 {
		return nil, errors.New("no public key")
	}
	return v, nil
}

func (v *Verifier) add(data []byte) error {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil
		}
		if block.Type != "PUBLIC KEY" {
			continue
		}
		parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return err
		}
		pub, ok := parsed.(ed25519.PublicKey)
		if !ok {
			return fmt.Errorf("a %T, not an Ed25519 public key", parsed)
		}
		v.keys[KeyID(pub)] = pub
	}
}

// KeyIDs lists the verifier's key ids.
func (v *Verifier) KeyIDs() []string {
	ids := make([]string, 0, len(v.keys))
	for id := range v.keys {
		ids = append(ids, id)
	}
	return ids
}

// Verify checks that sig is the signature of msg by the key keyID.
func (v *Verifier) Verify(keyID string, msg, sig []byte) error {
	pub, ok := v.keys[keyID]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownKey, keyID)
	}
	if !ed25519.Verify(pub, msg, sig) {
		return ErrBadSignature
	}
	return nil
}
