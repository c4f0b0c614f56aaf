package policy

import (
	"errors"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/signing"
)

func TestSealedSnapshots(t *testing.T) {
	signer, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	forger, _ := signing.Generate()
	v, err := signing.ParsePublicKeys(signer.PublicPEM())
	if err != nil {
		t.Fatal(err)
	}
	snap := &Snapshot{SchemaVersion: SchemaVersion, Version: 7, GeneratedAt: time.Now().UTC()}
	encoded, err := Encode(snap)
	if err != nil {
		t.Fatal(err)
	}
	sealed := Seal(encoded, signer)
	got, err := DecodeSigned(sealed, v)
	if err != nil || got.Version != 7 {
		t.Fatalf("DecodeSigned: %v %v", got, err)
	}

	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)-5] ^= 1
	forged := encoded
	{
		s := *snap
		s.Version = 1 << 62
		forged, _ = Encode(&s)
	}
	header, _, _, _ := Unseal(sealed)
	for _, tc := range []struct {
		name  string
		value []byte
		want  error
	}{
		{"unsigned", encoded, ErrUnsigned},
		{"a payload changed after signing", tampered, ErrBadSignature},
		{"signed by another key", Seal(forged, forger), ErrBadSignature},
		{"another payload under the real key's seal", append(sealed[:len(sealed)-len(encoded)], forged...), ErrBadSignature},
		{"garbage signature", append([]byte("PCSIG1 "+header+" !!!\n"), encoded...), ErrBadSignature},
		{"empty", nil, ErrUnsigned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeSigned(tc.value, v); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}
