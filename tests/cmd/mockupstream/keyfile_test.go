package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/logtest"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

const (
	fileKey1 = "sk-file-one-0123456789"
	fileKey2 = "sk-file-two-0123456789"
	fileKey3 = "sk-file-three-0123456789"
)

// writeKeys writes content to path and moves its modification time on, so that every
// write is a new version even on a file system with coarse timestamps.
func writeKeys(t *testing.T, path, content string) {
	t.Helper()
	var next time.Time
	if info, err := os.Stat(path); err == nil {
		next = info.ModTime().Add(time.Second)
	} else {
		next = time.Now()
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, next, next); err != nil {
		t.Fatal(err)
	}
}

// accepts reports which of keys mock accepts, by asking it through a chat request.
func accepts(t *testing.T, mock *mockupstream.Server, keys ...string) map[string]bool {
	t.Helper()
	out := make(map[string]bool)
	for _, k := range keys {
		out[k] = chatWithKey(mock, k) == http.StatusOK
	}
	return out
}

func TestLoadKeyFileRefusesBadFiles(t *testing.T) {
	tests := []struct {
		name    string
		content *string // nil: no file
		wantErr string
	}{
		{name: "missing file", wantErr: "accept-keys-file"},
		{name: "empty file", content: ptr(""), wantErr: "no key"},
		{name: "only comments", content: ptr("# a comment\n\n"), wantErr: "no key"},
		{name: "a key with a space", content: ptr(fileKey1 + "\nsk-bad key-0123456789\n"), wantErr: "line 2: a key must be printable ASCII without spaces"},
		{name: "a key too long", content: ptr(strings.Repeat("k", maxKeyLen+1)), wantErr: "line 1: a key must be 1 to 4096 characters long"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys")
			if tc.content != nil {
				writeKeys(t, path, *tc.content)
			}
			mock := mockupstream.New(mockupstream.Options{})
			_, err := loadKeyFile(path, mock, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "sk-bad") {
				t.Errorf("the error quotes a key: %v", err)
			}
			if n := mock.AcceptedKeys(); n != 0 {
				t.Errorf("a refused file accepted %d keys", n)
			}
		})
	}
	if f, err := loadKeyFile("", nil, nil); f != nil || err != nil {
		t.Errorf("no path: %v, %v; want nil, nil", f, err)
	}
}

// TestKeyFileFollowsChanges rewrites the file step by step and checks, before each
// request, which keys the mock accepts.
func TestKeyFileFollowsChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	writeKeys(t, path, "# demo keys\n"+fileKey1+"\n\n  "+fileKey2+"  \n")
	mock := mockupstream.New(mockupstream.Options{RequireKey: "sk-required-0123456789"})
	var logs logtest.Buffer
	f, err := loadKeyFile(path, mock, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	all := []string{fileKey1, fileKey2, fileKey3, "sk-required-0123456789"}

	steps := []struct {
		name    string
		change  func()
		want    []bool // for all's keys
		wantLog string // in the log lines the step wrote
	}{
		{name: "first read", change: func() {},
			want: []bool{true, true, false, true}},
		{name: "a key replaced", change: func() { writeKeys(t, path, fileKey2+"\n"+fileKey3+"\n") },
			want: []bool{false, true, true, true}, wantLog: `"added":1,"removed":1`},
		{name: "an empty file is ignored", change: func() { writeKeys(t, path, "") },
			want: []bool{false, true, true, true}, wantLog: "no key"},
		{name: "a malformed file is ignored", change: func() { writeKeys(t, path, fileKey1+"\nbad key\n") },
			want: []bool{false, true, true, true}, wantLog: "line 2"},
		{name: "a good file after a bad one", change: func() { writeKeys(t, path, fileKey1+"\n") },
			want: []bool{true, false, false, true}, wantLog: `"added":1,"removed":2`},
		{name: "a missing file keeps the keys", change: func() { _ = os.Remove(path) },
			want: []bool{true, false, false, true}, wantLog: "cannot be read"},
		{name: "the file back", change: func() { writeKeys(t, path, fileKey3+"\n") },
			want: []bool{false, false, true, true}, wantLog: `"added":1,"removed":1`},
	}
	for _, step := range steps {
		before := len(logs.String())
		step.change()
		f.refresh()
		f.refresh() // an unchanged file is not read again, nor logged twice
		got := accepts(t, mock, all...)
		for i, k := range all {
			if got[k] != step.want[i] {
				t.Errorf("%s: key %d accepted %v, want %v", step.name, i, got[k], step.want[i])
			}
		}
		written := logs.String()[before:]
		if step.wantLog != "" && (!strings.Contains(written, step.wantLog) || strings.Count(written, "\n") != 1) {
			t.Errorf("%s: logged %q, want one line with %q", step.name, written, step.wantLog)
		}
	}
	for _, k := range all {
		if strings.Contains(logs.String(), k) {
			t.Fatalf("the log holds a key:\n%s", logs.String())
		}
	}
}

func ptr[T any](v T) *T { return &v }

// chatWithKey sends mock a chat completion with key as a Bearer token and returns the
// status.
func chatWithKey(mock http.Handler, key string) int {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+key)
	mock.ServeHTTP(rec, req)
	return rec.Code
}
