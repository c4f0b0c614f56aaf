package natsconn

import (
	"os"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/config"
)

// TestValidateRefusesCredsOthersCanRead: a credentials file holds an nkey seed, so
// one that group or others can read is refused, naming the key and the mode.
func TestValidateRefusesCredsOthersCanRead(t *testing.T) {
	op := newOperator(t)
	creds := writeFile(t, "user.creds", userCreds(op.account, nil))
	if err := os.Chmod(creds, 0o644); err != nil {
		t.Fatal(err)
	}
	var p config.Problems
	Options{CredsFile: creds}.Validate(&p)
	err := p.Err()
	if err == nil || !strings.Contains(err.Error(), `PORTCULLIS_NATS_CREDS="`+creds+`"`) || !strings.Contains(err.Error(), "mode 0644") {
		t.Fatalf("Validate of a creds file of mode 0644: %v", err)
	}
	if err := os.Chmod(creds, 0o600); err != nil {
		t.Fatal(err)
	}
	p = config.Problems{}
	Options{CredsFile: creds}.Validate(&p)
	if err := p.Err(); err != nil {
		t.Fatalf("Validate of a creds file of mode 0600: %v", err)
	}
}
