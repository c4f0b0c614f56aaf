package apierr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestEveryCodeIsRegisteredWithAClientErrorOrServerStatus(t *testing.T) {
	for _, c := range Codes() {
		d := Lookup(c)
		if d.Status < 400 || d.Status > 599 || d.Type == "" {
			t.Errorf("code %s has def %+v", c, d)
		}
	}
}

func TestUnregisteredCodeReadsAsInternal(t *testing.T) {
	if got := Lookup("no_such_code").Status; got != http.StatusInternalServerError {
		t.Fatalf("status = %d", got)
	}
}

func TestOpenAIBodyHidesCause(t *testing.T) {
	cause := errors.New("dial tcp 10.0.0.1: secret detail")
	e := Wrap(UpstreamError, cause, "upstream failed")
	raw, err := json.Marshal(e.OpenAI())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"error":{"message":"upstream failed","type":"server_error","param":null,"code":"upstream_error"}}`
	if string(raw) != want {
		t.Fatalf("body = %s, want %s", raw, want)
	}
	if !errors.Is(e, cause) {
		t.Fatal("cause not unwrappable for logs")
	}
}

func TestFrom(t *testing.T) {
	inner := New(ModelNotAllowed, "model %q is not allowed", "gpt-4o")
	wrapped := fmt.Errorf("authorize: %w", inner)
	if got := From(wrapped); got != inner || got.Status() != http.StatusForbidden {
		t.Fatalf("From(wrapped) = %+v", got)
	}
	if got := From(errors.New("boom")); got.Code != Internal || got.Message != "internal error" {
		t.Fatalf("From(plain) = %+v", got)
	}
}
