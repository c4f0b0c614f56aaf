package usage

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestWithStreamUsage(t *testing.T) {
	tests := []struct {
		name      string
		raw       json.RawMessage
		wantAsked bool
		want      string
		wantErr   bool
	}{
		{name: "absent", raw: nil, want: `{"include_usage":true}`},
		{name: "null", raw: json.RawMessage(`null`), want: `{"include_usage":true}`},
		{name: "empty object", raw: json.RawMessage(`{}`), want: `{"include_usage":true}`},
		{name: "asked", raw: json.RawMessage(`{"include_usage":true}`), wantAsked: true, want: `{"include_usage":true}`},
		{name: "declined", raw: json.RawMessage(`{"include_usage":false}`), want: `{"include_usage":true}`},
		{name: "null include_usage", raw: json.RawMessage(`{"include_usage":null}`), want: `{"include_usage":true}`},
		{name: "other members kept", raw: json.RawMessage(`{ "include_obfuscation" : false, "include_usage":false, "x":{"y":[1]} }`),
			want: `{"include_obfuscation":false,"x":{"y":[1]},"include_usage":true}`},
		{name: "last duplicate counts", raw: json.RawMessage(`{"include_usage":true,"include_usage":false}`), want: `{"include_usage":true}`},
		{name: "escaped name", raw: json.RawMessage(`{"include_\u0075sage":true}`), wantAsked: true, want: `{"include_usage":true}`},
		{name: "not a boolean", raw: json.RawMessage(`{"include_usage":"yes"}`), wantErr: true},
		{name: "number", raw: json.RawMessage(`{"include_usage":1}`), wantErr: true},
		{name: "not an object", raw: json.RawMessage(`true`), wantErr: true},
		{name: "array", raw: json.RawMessage(`[{"include_usage":true}]`), wantErr: true},
		{name: "malformed", raw: json.RawMessage(`{"include_usage":tru`), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			asked, up, err := WithStreamUsage(tc.raw)
			if tc.wantErr {
				if !errors.Is(err, ErrStreamOptions) {
					t.Fatalf("err %v, want ErrStreamOptions", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if asked != tc.wantAsked || string(up) != tc.want {
				t.Errorf("WithStreamUsage = %v, %s; want %v, %s", asked, up, tc.wantAsked, tc.want)
			}
			if !json.Valid(up) {
				t.Errorf("upstream stream_options %s is not JSON", up)
			}
		})
	}
}
