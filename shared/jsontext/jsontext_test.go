package jsontext

import (
	"encoding/json"
	"testing"
)

func TestAppendString(t *testing.T) {
	tests := []string{"", "plain", "quote \" backslash \\", "ctl \x00\x01\x1f\t\r\n", "<&>", "é ü 日本", "\u2028\u2029", "bad \xff\xfe utf8", "\x7f"}
	for _, s := range tests {
		t.Run(s, func(t *testing.T) {
			got := AppendString(nil, s)
			var back string
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatalf("AppendString(%q) = %s, not JSON: %v", s, got, err)
			}
			want, _ := json.Marshal(s) // encoding/json's reading of s
			var wantBack string
			_ = json.Unmarshal(want, &wantBack)
			if back != wantBack {
				t.Errorf("AppendString(%q) decodes to %q, want %q", s, back, wantBack)
			}
		})
	}
}
