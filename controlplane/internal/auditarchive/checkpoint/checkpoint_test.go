package checkpoint

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/chain"
	"github.com/portcullis-gw/portcullis/shared/signing"
)

var at = time.Date(2026, 4, 14, 20, 5, 0, 123456789, time.UTC)

func signer(t *testing.T) *signing.Signer {
	t.Helper()
	s, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func verifier(t *testing.T, signers ...*signing.Signer) *signing.Verifier {
	t.Helper()
	var pems []byte
	for _, s := range signers {
		pems = append(pems, s.PublicPEM()...)
	}
	v, err := signing.ParsePublicKeys(pems)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestTheSignedMessageIsAsDocumented checks a chain checkpoint the way an outside
// verifier would: from its JSON and the public key's PEM alone, rebuilding the
// message as docs/audit.md spells it, with crypto/ed25519 and nothing of this
// package.
func TestTheSignedMessageIsAsDocumented(t *testing.T) {
	s := signer(t)
	hash := chain.Genesis("eu")
	c := Sign(s, "eu", 57, hash, at.In(time.FixedZone("CEST", 2*3600)))
	data, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		V         int    `json:"v"`
		Region    string `json:"region"`
		Seq       int64  `json:"seq"`
		ChainHash string `json:"chain_hash"`
		At        string `json:"at"`
		KeyID     string `json:"key_id"`
		Sig       string `json:"sig"`
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	// at is cut to microseconds and in UTC, as Postgres gives it back.
	if got.At != "2026-04-14T20:05:00.123456Z" || got.V != 1 || got.KeyID != s.KeyID() || strings.Contains(string(data), "rows_digest") {
		t.Fatalf("checkpoint JSON %s", data)
	}
	msg := "portcullis-audit-checkpoint-v1\neu\n57\n" + hash + "\n2026-04-14T20:05:00.123456Z"
	if string(ChainMessage(got.Region, got.Seq, got.ChainHash, c.At)) != msg {
		t.Fatalf("message %q, want %q", ChainMessage(got.Region, got.Seq, got.ChainHash, c.At), msg)
	}
	sig, err := base64.StdEncoding.DecodeString(got.Sig)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(s.PublicPEM())
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(pub.(ed25519.PublicKey), []byte(msg), sig) {
		t.Fatal("the signature does not verify over the documented message")
	}

	// The export message adds the range, the client and the rows' digest.
	d := NewDigest()
	d.Add(56, hash)
	d.Add(57, hash)
	e := Export{From: at.Add(-time.Hour), To: at, Client: "c-1", RowsDigest: d.Sum()}
	ec := SignExport(s, "eu", 57, hash, at, e)
	want := "portcullis-audit-export-v1\neu\n57\n" + hash + "\n2026-04-14T20:05:00.123456Z\n2026-04-14T19:05:00.123456789Z\n2026-04-14T20:05:00.123456789Z\nc-1\n" + d.Sum()
	if !ed25519.Verify(pub.(ed25519.PublicKey), []byte(want), ec.Sig) {
		t.Fatalf("the export signature does not verify over the documented message %q", want)
	}
	sum := sha256.Sum256([]byte("56 " + hash + "\n57 " + hash + "\n"))
	if d.Sum() != hex.EncodeToString(sum[:]) {
		t.Fatalf("digest %s is not the SHA-256 of the rows' \"<seq> <chain_hash>\\n\" lines", d.Sum())
	}
	if NewDigest().Sum() != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Fatal("the digest of no rows is not the SHA-256 of nothing")
	}
}

func TestVerify(t *testing.T) {
	s, other := signer(t), signer(t)
	v := verifier(t, s)
	c := Sign(s, "eu", 3, chain.Genesis("eu"), at)
	if err := c.Verify(v); err != nil {
		t.Fatalf("a fresh checkpoint: %v", err)
	}
	if err := c.Verify(verifier(t, other, s)); err != nil {
		t.Fatalf("with a rollover's two keys: %v", err)
	}
	tests := []struct {
		name   string
		change func(c *Checkpoint)
		want   error
	}{
		{"another seq", func(c *Checkpoint) { c.Seq = 4 }, signing.ErrBadSignature},
		{"another region", func(c *Checkpoint) { c.Region = "us" }, signing.ErrBadSignature},
		{"another hash", func(c *Checkpoint) { c.ChainHash = chain.Genesis("us") }, signing.ErrBadSignature},
		{"another time", func(c *Checkpoint) { c.At = c.At.Add(time.Microsecond) }, signing.ErrBadSignature},
		{"signed by another key", func(c *Checkpoint) { *c = Sign(other, c.Region, c.Seq, c.ChainHash, c.At) }, signing.ErrUnknownKey},
		{"another key's signature under this id", func(c *Checkpoint) { c.Sig = Sign(other, c.Region, c.Seq, c.ChainHash, c.At).Sig },
			signing.ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bad := c
			bad.Sig = append([]byte(nil), c.Sig...)
			tc.change(&bad)
			if err := bad.Verify(v); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
	// An export checkpoint is no chain checkpoint, and the other way round: the
	// domains differ, so neither signature passes for the other.
	e := Export{From: at.Add(-time.Hour), To: at, RowsDigest: NewDigest().Sum()}
	ec := SignExport(s, "eu", 3, chain.Genesis("eu"), at, e)
	if err := ec.VerifyExport(v, e); err != nil {
		t.Fatalf("export checkpoint: %v", err)
	}
	if err := ec.Verify(v); err == nil {
		t.Fatal("an export checkpoint passed as a chain checkpoint")
	}
	forged := c
	forged.RowsDigest = e.RowsDigest
	if err := forged.VerifyExport(v, e); !errors.Is(err, signing.ErrBadSignature) {
		t.Fatalf("a chain checkpoint's signature as an export's: %v", err)
	}
	for name, e2 := range map[string]Export{
		"another client": {From: e.From, To: e.To, Client: "c", RowsDigest: e.RowsDigest},
		"another range":  {From: e.From.Add(time.Second), To: e.To, RowsDigest: e.RowsDigest},
		"other rows":     {From: e.From, To: e.To, RowsDigest: chain.Genesis("x")},
	} {
		if err := ec.VerifyExport(v, e2); !errors.Is(err, signing.ErrBadSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestDecode(t *testing.T) {
	s := signer(t)
	c := Sign(s, "eu", 3, chain.Genesis("eu"), at)
	data, _ := Encode(c)
	got, err := Decode(data)
	if err != nil || got.Seq != 3 || !got.At.Equal(c.At) || string(got.Sig) != string(c.Sig) {
		t.Fatalf("Decode: %+v %v", got, err)
	}
	if err := got.Verify(verifier(t, s)); err != nil {
		t.Fatalf("a decoded checkpoint: %v", err)
	}
	for name, bad := range map[string]string{
		"unknown field":  strings.Replace(string(data), `{"v":1,`, `{"v":1,"x":1,`, 1),
		"version 2":      strings.Replace(string(data), `{"v":1,`, `{"v":2,`, 1),
		"short sig":      strings.Replace(string(data), base64.StdEncoding.EncodeToString(c.Sig), base64.StdEncoding.EncodeToString(c.Sig[:63]), 1),
		"bad hash":       strings.Replace(string(data), `"chain_hash":"`, `"chain_hash":"X`, 1),
		"two objects":    string(data) + string(data),
		"region newline": strings.Replace(string(data), `"region":"eu"`, `"region":"eu\n"`, 1),
	} {
		if _, err := Decode([]byte(bad)); err == nil {
			t.Errorf("%s: decoded %s", name, bad)
		}
	}
}
