package policy

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/portcullis-gw/portcullis/shared/signing"
)

// A published snapshot is sealed: one header line, then the encoded snapshot (see
// Encode):
//
//	PCSIG1 <key id> <signature, base64url without padding>\n<encoded snapshot>
//
// The signature is Ed25519 over signedPrefix followed by the encoded snapshot's
// bytes, by the control plane's policy signing key. Data planes apply only a snapshot
// whose signature verifies against one of their configured public keys, so a process
// that can write PC_POLICY but holds no signing key cannot change the policy
// (docs/design.md §3).
const sealMagic = "PCSIG1"

// signedPrefix separates policy signatures from every other use of the key.
const signedPrefix = "portcullis-policy-v1\n"

// maxSealHeader bounds the header line.
const maxSealHeader = 512

// Errors of Open, for the rejection counters.
var (
	// ErrUnsigned: the value is not a sealed snapshot.
	ErrUnsigned = errors.New("the snapshot is not signed")
	// ErrBadSignature: the seal does not verify against any configured key.
	ErrBadSignature = errors.New("the snapshot's signature does not verify")
)

// Seal signs an encoded snapshot.
func Seal(encoded []byte, s *signing.Signer) []byte {
	sig := s.Sign(signedMessage(encoded))
	header := fmt.Sprintf("%s %s %s\n", sealMagic, s.KeyID(), base64.RawURLEncoding.EncodeToString(sig))
	return append([]byte(header), encoded...)
}

// Unseal splits a sealed value into its key id, signature and encoded snapshot,
// without verifying anything.
func Unseal(sealed []byte) (keyID string, sig, encoded []byte, err error) {
	nl := bytes.IndexByte(sealed[:min(len(sealed), maxSealHeader)], '\n')
	if nl < 0 {
		return "", nil, nil, ErrUnsigned
	}
	fields := bytes.Fields(sealed[:nl])
	if len(fields) != 3 || string(fields[0]) != sealMagic {
		return "", nil, nil, ErrUnsigned
	}
	sig, err = base64.RawURLEncoding.DecodeString(string(fields[2]))
	if err != nil {
		return "", nil, nil, fmt.Errorf("%w: the signature is not base64url", ErrBadSignature)
	}
	return string(fields[1]), sig, sealed[nl+1:], nil
}

// Open verifies a sealed value against v and returns its encoded snapshot and the id
// of the key that signed it.
func Open(sealed []byte, v *signing.Verifier) (encoded []byte, keyID string, err error) {
	keyID, sig, encoded, err := Unseal(sealed)
	if err != nil {
		return nil, "", err
	}
	if err := v.Verify(keyID, signedMessage(encoded), sig); err != nil {
		return nil, keyID, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return encoded, keyID, nil
}

// DecodeSigned is Open then Decode.
func DecodeSigned(sealed []byte, v *signing.Verifier) (*Snapshot, error) {
	encoded, _, err := Open(sealed, v)
	if err != nil {
		return nil, err
	}
	return Decode(encoded)
}

func signedMessage(encoded []byte) []byte {
	return append([]byte(signedPrefix), encoded...)
}
