package api

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"reflect"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/logging"
)

// TestAccessLineByHandIsSlogs: the access log line built by hand (a logger from
// logging.New) has the same fields, values and order as the one written through
// slog (any other logger), and the level still filters it.
func TestAccessLineByHandIsSlogs(t *testing.T) {
	line := accessLine{
		head:   [4]logField{{"request_id", "abc"}, {"client_request_id", "c\"1"}, {"method", "POST"}, {"route", "/v1/chat/completions"}},
		status: 503, latencyMS: 0.571,
		tail: []logField{{"client_id", "app\n1"}, {"model", "gpt-4o"}, {"deployment", ""}, {"error_code", "upstream_unavailable"}},
	}
	var byHand, viaSlog bytes.Buffer
	fast := &server{Options: Options{Log: logging.New(&byHand, "info").With("region", "eu")}}
	fast.lines = logging.Lines(fast.Log)
	if fast.lines == nil {
		t.Fatal("logging.New's logger builds no lines by hand")
	}
	slow := &server{Options: Options{Log: slog.New(slog.NewJSONHandler(&viaSlog, nil)).With("region", "eu")}}
	fast.logAccess(context.Background(), slog.LevelWarn, line)
	slow.logAccess(context.Background(), slog.LevelWarn, line)

	keys := func(b []byte) ([]string, map[string]any) {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("not a JSON line: %v: %s", err, b)
		}
		delete(m, "time")
		var order []string
		dec := json.NewDecoder(bytes.NewReader(b))
		_, _ = dec.Token()
		for dec.More() {
			k, _ := dec.Token()
			order = append(order, k.(string))
			var skip any
			_ = dec.Decode(&skip)
		}
		return order, m
	}
	fastOrder, fastFields := keys(byHand.Bytes())
	slowOrder, slowFields := keys(viaSlog.Bytes())
	if !reflect.DeepEqual(fastFields, slowFields) || !reflect.DeepEqual(fastOrder, slowOrder) {
		t.Fatalf("by hand:\n%s\nthrough slog:\n%s", byHand.Bytes(), viaSlog.Bytes())
	}

	byHand.Reset()
	quiet := &server{Options: Options{Log: logging.New(&byHand, "error")}}
	quiet.lines = logging.Lines(quiet.Log)
	quiet.logAccess(context.Background(), slog.LevelWarn, line)
	if byHand.Len() != 0 {
		t.Fatalf("a warn line was written at level error: %s", byHand.Bytes())
	}
}
