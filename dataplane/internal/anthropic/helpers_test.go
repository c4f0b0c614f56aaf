package anthropic

import (
	"bytes"
	"encoding/json"
	"testing"
)

// fields decodes a JSON object into its top-level fields, as the API hands them over.
func fields(t testing.TB, body string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("bad test body %s: %v", body, err)
	}
	return m
}

// canonical re-encodes JSON so that two documents compare equal when they mean the same.
func canonical(t testing.TB, doc []byte) string {
	t.Helper()
	var v any
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		t.Fatalf("not JSON: %s: %v", doc, err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func assertJSON(t testing.TB, got []byte, want string) {
	t.Helper()
	if g, w := canonical(t, got), canonical(t, []byte(want)); g != w {
		t.Errorf("got  %s\nwant %s", g, w)
	}
}
