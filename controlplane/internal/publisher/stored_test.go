package publisher

import (
	"bytes"
	"compress/gzip"
	"testing"
)

func gzipOf(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestStoredVersion(t *testing.T) {
	tests := []struct {
		name   string
		data   []byte
		want   int64
		wantOK bool
	}{
		{"encoded snapshot", mustEncode(t, 7), 7, true},
		{"future schema still compares", gzipOf(t, `{"schema_version":99,"version":12}`), 12, true},
		{"empty", nil, 0, false},
		{"not gzip", []byte(`{"schema_version":1,"version":3}`), 0, false},
		{"no version", gzipOf(t, `{"schema_version":1}`), 0, false},
		{"no schema", gzipOf(t, `{"version":4}`), 0, false},
		{"truncated", mustEncode(t, 7)[:10], 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := storedVersion(tt.data)
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("storedVersion = %d, %v; want %d, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
