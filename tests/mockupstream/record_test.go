package mockupstream_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

// serveChat sends a chat completion with request id id straight to m's handler, as a
// gateway's deployment would, and returns the status.
func serveChat(m http.Handler, id string) int {
	return serveDirect(m, http.MethodPost, "/d/openai-eu/v1/chat/completions",
		`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello, how are you today?"}]}`, id)
}

// serveDirect sends a request with body and request id id straight to m's handler, with
// the headers a gateway sends, and returns the status.
func serveDirect(m http.Handler, method, path, body, id string) int {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer sk-test")
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	r.Header.Set("User-Agent", "portcullis-dataplane/test")
	r.Header.Set("X-Request-Id", id)
	w := httptest.NewRecorder()
	m.ServeHTTP(w, r)
	return w.Code
}

// requestIDs returns the X-Request-Id of each record.
func requestIDs(reqs []mockupstream.Request) []string {
	ids := make([]string, len(reqs))
	for i, r := range reqs {
		ids[i] = r.Header.Get("X-Request-Id")
	}
	return ids
}

// ids returns "r<from>" to "r<to-1>".
func ids(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, "r"+strconv.Itoa(i))
	}
	return out
}

func TestRecordLimitKeepsTheLastRequests(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int
		sent  int
		want  []string // the request ids kept, oldest first
	}{
		{"fewer than the limit", 5, 3, ids(0, 3)},
		{"exactly the limit", 5, 5, ids(0, 5)},
		{"past the limit, the oldest go", 5, 13, ids(8, 13)},
		{"a limit of one", 1, 4, ids(3, 4)},
		{"the default limit", 0, mockupstream.DefaultRecordLimit + 10, ids(10, mockupstream.DefaultRecordLimit+10)},
		{"RecordAll keeps every record", mockupstream.RecordAll, mockupstream.DefaultRecordLimit + 10, ids(0, mockupstream.DefaultRecordLimit+10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mockupstream.New(mockupstream.Options{RecordLimit: tc.limit})
			for i := range tc.sent {
				if status := serveChat(m, "r"+strconv.Itoa(i)); status != http.StatusOK {
					t.Fatalf("request %d: status %d", i, status)
				}
			}
			if got := requestIDs(m.Requests()); strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("kept %d records %v, want %d: %v", len(got), abbreviate(got), len(tc.want), abbreviate(tc.want))
			}
			if got := m.RequestCount(); got != tc.sent {
				t.Errorf("RequestCount %d, want %d", got, tc.sent)
			}

			// Reset forgets the records and the count; the ring starts over.
			m.Reset()
			if n, count := len(m.Requests()), m.RequestCount(); n != 0 || count != 0 {
				t.Fatalf("after Reset: %d records, RequestCount %d", n, count)
			}
			serveChat(m, "after-reset")
			if got := requestIDs(m.Requests()); len(got) != 1 || got[0] != "after-reset" || m.RequestCount() != 1 {
				t.Errorf("after Reset and one request: records %v, RequestCount %d", got, m.RequestCount())
			}
		})
	}
}

// abbreviate shortens a long list of ids for a failure message.
func abbreviate(list []string) string {
	if len(list) <= 8 {
		return fmt.Sprint(list)
	}
	return fmt.Sprintf("[%s ... %s]", strings.Join(list[:4], " "), strings.Join(list[len(list)-4:], " "))
}

// TestRecordsStayBoundedUnderLoad sends 200k requests from 8 goroutines through the
// handler, as a long benchmark does: the mock keeps DefaultRecordLimit records, counts
// every request, and its heap after a collection stays within a few MiB of where it
// started (keeping every record took some 130 MiB). It sends
// GET /v1/models, recorded like any model request, at half a chat completion's cost.
func TestRecordsStayBoundedUnderLoad(t *testing.T) {
	const (
		total     = 200_000
		workers   = 8
		maxGrowth = 32 << 20
	)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	m := mockupstream.New(mockupstream.Options{})
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for n := next.Add(1); n <= total; n = next.Add(1) {
				if serveDirect(m, http.MethodGet, "/d/openai-eu/v1/models", "", "load-"+strconv.FormatInt(n, 10)) != http.StatusOK {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed", n, total)
	}

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	kept, count := len(m.Requests()), m.RequestCount()
	t.Logf("%d requests: %d records kept, RequestCount %d, heap %.1f MiB before, %.1f MiB after", total, kept, count, float64(before.HeapAlloc)/(1<<20), float64(after.HeapAlloc)/(1<<20))
	if kept != mockupstream.DefaultRecordLimit || count != total {
		t.Errorf("%d records kept and RequestCount %d, want %d and %d", kept, count, mockupstream.DefaultRecordLimit, total)
	}
	if growth := int64(after.HeapAlloc) - int64(before.HeapAlloc); growth > maxGrowth {
		t.Errorf("the heap grew by %d bytes over %d requests, want at most %d", growth, total, maxGrowth)
	}
	runtime.KeepAlive(m)
}
