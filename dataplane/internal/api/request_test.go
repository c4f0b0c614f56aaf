package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/apierr"
)

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantModel  string
		wantStream bool
		wantCode   apierr.Code
		wantParam  string
	}{
		{name: "chat", body: `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, wantModel: "gpt-4o"},
		{name: "stream true", body: `{"model":"m","stream":true}`, wantModel: "m", wantStream: true},
		{name: "stream null", body: `{"model":"m","stream":null}`, wantModel: "m"},
		{name: "not json", body: `{"model":`, wantCode: apierr.InvalidJSON},
		{name: "json array", body: `[1,2]`, wantCode: apierr.InvalidJSON},
		{name: "json null", body: `null`, wantCode: apierr.InvalidJSON},
		{name: "empty body", body: ``, wantCode: apierr.InvalidJSON},
		{name: "missing model", body: `{"messages":[]}`, wantCode: apierr.InvalidRequest, wantParam: "model"},
		{name: "model not a string", body: `{"model":42}`, wantCode: apierr.InvalidRequest, wantParam: "model"},
		{name: "blank model", body: `{"model":"  "}`, wantCode: apierr.InvalidRequest, wantParam: "model"},
		{name: "stream not a bool", body: `{"model":"m","stream":"yes"}`, wantCode: apierr.InvalidRequest, wantParam: "stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := decodeRequest([]byte(tt.body))
			if tt.wantCode != "" {
				var e *apierr.Error
				if !errors.As(err, &e) || e.Code != tt.wantCode || e.Param != tt.wantParam || e.Status() != http.StatusBadRequest {
					t.Fatalf("decodeRequest error = %#v, want code %s param %q", err, tt.wantCode, tt.wantParam)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeRequest: %v", err)
			}
			if r.Model != tt.wantModel || r.Stream != tt.wantStream {
				t.Fatalf("got model %q stream %v, want %q %v", r.Model, r.Stream, tt.wantModel, tt.wantStream)
			}
		})
	}
}

func TestWithModelKeepsEveryOtherField(t *testing.T) {
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"<b>&</b>"}],"x_vendor":{"a":[1,2]},"stream":false}`
	r, err := decodeRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.withModel("gpt-4o-2024-08-06")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"content":"<b>&</b>"`) {
		t.Fatalf("text was re-escaped: %s", out)
	}
	var got, want map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(body), &want); err != nil {
		t.Fatal(err)
	}
	want["model"] = "gpt-4o-2024-08-06"
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Fatalf("rewritten body = %s, want %s", gotJSON, wantJSON)
	}
	if r.Model != "gpt-4o" {
		t.Fatalf("withModel changed the request's own model to %q", r.Model)
	}
}

// encoderWithModel is how withModel used to build the body, with encoding/json's
// Encoder over a copy of the fields; withModel must produce the same bytes.
func encoderWithModel(t testing.TB, r *request, upstreamModel string) []byte {
	t.Helper()
	fields := make(map[string]json.RawMessage, len(r.fields))
	for k, v := range r.fields {
		fields[k] = v
	}
	m, err := json.Marshal(upstreamModel)
	if err != nil {
		t.Fatal(err)
	}
	fields["model"] = m
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(fields); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func TestWithModelMatchesTheEncoder(t *testing.T) {
	tests := []struct {
		name, body, upstream string
	}{
		{name: "chat", body: `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":64}`, upstream: "gpt-4o-2024-08-06"},
		{name: "whitespace inside values", body: "{ \"model\" : \"m\" ,\n\t\"messages\": [ {\"role\" : \"user\", \"content\": \"a  b\"} ] }", upstream: "u"},
		{name: "html and unicode text", body: `{"model":"m","messages":[{"content":"<b>&amp;</b> \u003c \u2028 é 日本"}]}`, upstream: "u"},
		{name: "upstream model with html", body: `{"model":"m"}`, upstream: "a<b>&c"},
		{name: "escaped and odd keys", body: `{"model":"m","a\"b":1,"back\\slash":2,"tab\tkey":3,"\u00e9t\u00e9":4,"<html>&":5,"del\u007f":6,"ctl\u0001":7,"":8}`, upstream: "u"},
		{name: "key spelled with escapes", body: `{"\u006dodel":"m","x":1}`, upstream: "u"},
		{name: "duplicate keys", body: `{"model":"a","x":1,"x":2,"model":"b"}`, upstream: "u"},
		{name: "invalid utf-8 in a key", body: "{\"model\":\"m\",\"k\xff\":1}", upstream: "u"},
		{name: "numbers and literals", body: `{"model":"m","t":0.10,"e":1e3,"n":null,"b":false,"neg":-0}`, upstream: "u"},
		{name: "sorting", body: `{"z":1,"model":"m","a":2,"M":3,"mode":4,"models":5}`, upstream: "u"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := decodeRequest([]byte(tt.body))
			if err != nil {
				t.Fatalf("decodeRequest: %v", err)
			}
			got, err := r.withModel(tt.upstream)
			if err != nil {
				t.Fatalf("withModel: %v", err)
			}
			if want := encoderWithModel(t, r, tt.upstream); !bytes.Equal(got, want) {
				t.Fatalf("withModel = %s\nencoder   = %s", got, want)
			}
		})
	}
}

// FuzzDecodeRequest checks that any body either decodes into a request whose
// rewritten form is a JSON object with the new model and the same other fields,
// byte for byte what the Encoder makes of them, or fails with a 400 from the
// registry; never a panic or another status.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	f.Add([]byte(`{"model":"m","stream":true,"stream_options":{"include_usage":true}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeRequest(body)
		if err != nil {
			var e *apierr.Error
			if !errors.As(err, &e) || e.Status() != http.StatusBadRequest {
				t.Fatalf("error %v is not a 400 *apierr.Error", err)
			}
			return
		}
		if strings.TrimSpace(r.Model) == "" {
			t.Fatal("decoded an empty model")
		}
		out, err := r.withModel("upstream-model")
		if err != nil {
			t.Fatalf("withModel: %v", err)
		}
		if want := encoderWithModel(t, r, "upstream-model"); !bytes.Equal(out, want) {
			t.Fatalf("withModel = %s, encoder = %s", out, want)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(out, &fields); err != nil {
			t.Fatalf("rewritten body is not a JSON object: %v", err)
		}
		var model string
		if err := json.Unmarshal(fields["model"], &model); err != nil || model != "upstream-model" {
			t.Fatalf("rewritten model = %s", fields["model"])
		}
		if len(fields) != len(r.fields) {
			t.Fatalf("rewritten body has %d fields, want %d", len(fields), len(r.fields))
		}
	})
}

// TestClientRequestID: a client's X-Request-Id is kept (as client_request_id) only
// when sane; the gateway's own ids are fresh, sane and never repeat.
func TestClientRequestID(t *testing.T) {
	tests := []struct {
		name   string
		client string
		keep   bool
	}{
		{name: "sane id is kept", client: "req-01.AB_c:9", keep: true},
		{name: "128 chars is kept", client: strings.Repeat("a", 128), keep: true},
		{name: "empty is dropped", client: ""},
		{name: "129 chars is dropped", client: strings.Repeat("a", 129)},
		{name: "space is dropped", client: "a b"},
		{name: "header injection is dropped", client: "a\r\nx-evil: 1"},
		{name: "non-ascii is dropped", client: "übel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := validRequestID(tt.client); got != tt.keep {
				t.Fatalf("validRequestID(%q) = %v, want %v", tt.client, got, tt.keep)
			}
		})
	}
	seen := map[string]bool{}
	for range 1000 {
		id := newRequestID()
		if !validRequestID(id) || len(id) != 32 || seen[id] {
			t.Fatalf("newRequestID() = %q: want a fresh 32-char id", id)
		}
		seen[id] = true
	}
}

func TestBoundedLabel(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{in: "app-1", want: "app-1"},
		{in: strings.Repeat("a", maxLabelBytes), want: strings.Repeat("a", maxLabelBytes)},
		{in: strings.Repeat("a", maxLabelBytes+1), want: strings.Repeat("a", maxLabelBytes) + "…"},
		{in: strings.Repeat("a", maxLabelBytes-1) + "é", want: strings.Repeat("a", maxLabelBytes-1) + "…"},
		{in: "bad\xffutf8", want: "bad\uFFFDutf8"},
	} {
		if got := boundedLabel(tc.in); got != tc.want {
			t.Fatalf("boundedLabel(%.30q…) = %.30q…, want %.30q…", tc.in, got, tc.want)
		}
	}
}
