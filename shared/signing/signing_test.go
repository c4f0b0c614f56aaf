package signing

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSignAndVerifyWithRollover(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys", "policy-signing-key.pem")
	s, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("LoadOrCreate: %v created %v", err, created)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("private key file: %v", err)
	}
	again, created, err := LoadOrCreate(path)
	if err != nil || created || again.KeyID() != s.KeyID() {
		t.Fatalf("second LoadOrCreate: %v created %v id %s, want %s", err, created, again.KeyID(), s.KeyID())
	}
	next, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(PublicPath(path))
	if err != nil {
		t.Fatal(err)
	}
	v, err := ParsePublicKeys(append(pub, next.PublicPEM()...)) // a rollover lists both
	if err != nil || len(v.KeyIDs()) != 2 {
		t.Fatalf("ParsePublicKeys: %v %v", err, v)
	}
	msg := []byte("snapshot")
	for _, signer := range []*Signer{s, next} {
		if err := v.Verify(signer.KeyID(), msg, signer.Sign(msg)); err != nil {
			t.Fatalf("Verify by %s: %v", signer.KeyID(), err)
		}
	}
	if err := v.Verify(s.KeyID(), []byte("snapshot!"), s.Sign(msg)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("a changed message: %v", err)
	}
	if err := v.Verify(s.KeyID(), msg, next.Sign(msg)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("another key's signature under this id: %v", err)
	}
	other, _ := Generate()
	if err := v.Verify(other.KeyID(), msg, other.Sign(msg)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("an unknown key: %v", err)
	}
}

func TestLoadRefusesAReadableKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.pem")
	if _, _, err := LoadOrCreate(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil {
		t.Fatal("a world-readable signing key was loaded")
	}
	// Group-readable: refused unless root owns it (as Kubernetes mounts a Secret);
	// see secretfile.Allowed.
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); (err == nil) != (os.Getuid() == 0) {
		t.Fatalf("a group-readable signing key owned by uid %d: %v", os.Getuid(), err)
	}
	if _, err := ParsePublicKeys([]byte("not pem")); err == nil {
		t.Fatal("no key parsed without an error")
	}
}
