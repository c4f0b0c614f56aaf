package natsconn

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/portcullis-gw/portcullis/shared/config"
	"github.com/portcullis-gw/portcullis/shared/testcerts"
)

func TestValidate(t *testing.T) {
	op := newOperator(t)
	creds := writeFile(t, "user.creds", userCreds(op.account, nil))
	expired := writeFile(t, "expired.creds", userCreds(op.account, func(uc *jwt.UserClaims) {
		uc.Expires = time.Now().Add(-time.Minute).Unix()
	}))
	// The JWT of one user with the seed of another.
	ukp := must(nkeys.CreateUser())
	uc := jwt.NewUserClaims(must(must(nkeys.CreateUser()).PublicKey()))
	mismatched := writeFile(t, "mismatched.creds", append(
		must(jwt.DecorateJWT(must(uc.Encode(op.account)))), must(jwt.DecorateSeed(must(ukp.Seed())))...))
	_, caFile := writeCA(t)
	missing := filepath.Join(t.TempDir(), "missing")
	ca := testcerts.NewCA(t)
	clientCert, clientKey := testcerts.WritePair(t, ca.ClientCert(t, "dp-eu"))
	_, otherKey := testcerts.WritePair(t, ca.ClientCert(t, "dp-us"))

	tests := []struct {
		name string
		o    Options
		want []string // substrings of the error; none means valid
	}{
		{name: "nothing set", o: Options{}},
		{name: "valid creds and CA", o: Options{CredsFile: creds, CAFile: caFile}},
		{name: "missing files are both named", o: Options{CredsFile: missing, CAFile: missing},
			want: []string{`PORTCULLIS_NATS_CREDS="` + missing + `": cannot read`, `PORTCULLIS_NATS_CA_FILE="` + missing + `": cannot read`}},
		{name: "a CA file is not creds", o: Options{CredsFile: caFile}, want: []string{"PORTCULLIS_NATS_CREDS=", "not a NATS credentials file"}},
		{name: "creds are not a CA file", o: Options{CAFile: creds}, want: []string{"PORTCULLIS_NATS_CA_FILE=", "no PEM certificate"}},
		{name: "expired user JWT", o: Options{CredsFile: expired}, want: []string{"PORTCULLIS_NATS_CREDS=", "expired at"}},
		{name: "seed of another user", o: Options{CredsFile: mismatched}, want: []string{"PORTCULLIS_NATS_CREDS=", "does not belong"}},
		{name: "client certificate and its key", o: Options{CertFile: clientCert, KeyFile: clientKey}},
		{name: "certificate without key", o: Options{CertFile: clientCert}, want: []string{"PORTCULLIS_NATS_KEY_FILE=", "required with PORTCULLIS_NATS_CERT_FILE"}},
		{name: "key without certificate", o: Options{KeyFile: clientKey}, want: []string{"PORTCULLIS_NATS_CERT_FILE=", "required with PORTCULLIS_NATS_KEY_FILE"}},
		{name: "key of another certificate", o: Options{CertFile: clientCert, KeyFile: otherKey}, want: []string{"PORTCULLIS_NATS_KEY_FILE=", "not the key of the certificate"}},
		{name: "a directory", o: Options{CredsFile: t.TempDir()}, want: []string{"PORTCULLIS_NATS_CREDS=", "cannot read"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p config.Problems
			tt.o.Validate(&p)
			err := p.Err()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted bad files")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestFlags(t *testing.T) {
	var creds, ca string
	l := config.NewLoader("test", io.Discard)
	Flags(l, &creds, &ca)
	_, err := l.Parse([]string{"-nats-ca-file", "/flag/ca.pem"}, func(k string) string {
		return map[string]string{"PORTCULLIS_NATS_CREDS": "/env/user.creds", "PORTCULLIS_NATS_CA_FILE": "/env/ca.pem"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if creds != "/env/user.creds" || ca != "/flag/ca.pem" {
		t.Fatalf("creds %q, CA file %q", creds, ca)
	}
}
