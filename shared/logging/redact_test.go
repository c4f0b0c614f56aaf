package logging_test

import (
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/logging"
)

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://alice:s3cret@nats.internal:4222", "nats://REDACTED@nats.internal:4222"},
		{"nats://s3cret-token@nats.internal:4222", "nats://REDACTED@nats.internal:4222"},
		{"tls://a:s3cret@n1:4222, tls://n2:4222", "tls://REDACTED@n1:4222,tls://n2:4222"},
		{"postgres://portcullis:s3cret@db:5432/portcullis?sslmode=verify-full", "postgres://REDACTED@db:5432/portcullis?sslmode=verify-full"},
		{"postgres://db/portcullis?user=p&password=s3cret&sslmode=require", "postgres://db/portcullis?password=REDACTED&sslmode=require&user=p"},
		{"host=db dbname=portcullis password=s3cret sslmode=require", "host=db dbname=portcullis password=REDACTED sslmode=require"},
		{"host=db password='s3 cret' user=p", "host=db password=REDACTED user=p"},
		{"https://vault.internal:8200", "https://vault.internal:8200"},
		{"https://hooks.example.com/alert?token=s3cret&team=ops", "https://hooks.example.com/alert?team=ops&token=REDACTED"},
		{"https://hooks.example.com/alert?sig=s3cret", "https://hooks.example.com/alert?sig=REDACTED"},
		{"https://hooks.example.com/alert?api_key=s3cret", "https://hooks.example.com/alert?api_key=REDACTED"},
		{"alice:s3cret@nats:4222", "(REDACTED: not a valid URL)"},
		{"127.0.0.1:4222", "127.0.0.1:4222"},
	}
	for _, tt := range tests {
		got := logging.RedactURL(tt.in)
		if got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if strings.Contains(got, "s3cret") || strings.Contains(got, "s3 cret") {
			t.Errorf("RedactURL(%q) = %q still holds the secret", tt.in, got)
		}
	}
}
