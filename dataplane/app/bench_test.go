package app_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/dataplane/app"
	"github.com/portcullis-gw/portcullis/dataplane/internal/tracing"
)

// The benchmarks below send the request make bench sends (tests/bench) through a real
// data plane: HTTP over loopback, JWT verification against a JWKS, the policy from an
// embedded nats-server, and an upstream on 127.0.0.1 that answers as cheaply as it
// can, so that most of the CPU they measure is the gateway's. The client, the
// gateway and the upstream share the process, so the allocations reported are all
// three together; compare runs, not absolute numbers.

// benchPrompt is the user message of every request: about 40 words.
var benchPrompt = strings.Repeat("Summarise the residency rules for the eu region in one short paragraph. ", 4)

func benchBody(stream bool) []byte {
	s := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + benchPrompt + `"}],"max_tokens":64`
	if stream {
		s += `,"stream":true,"stream_options":{"include_usage":true}`
	}
	return []byte(s + "}")
}

// benchUpstream is a lean OpenAI-speaking upstream: a fixed completion, or 11 fixed
// events and [DONE] when the body asks for a stream. It counts the connections the
// gateway opens to it.
type benchUpstream struct {
	srv   *httptest.Server
	conns atomic.Int64
}

const benchCompletion = `{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"The eu residency keeps every request on deployments in the eu region."},"finish_reason":"stop"}],"usage":{"prompt_tokens":52,"completion_tokens":14,"total_tokens":66}}`

var benchEvents = func() []byte {
	var b bytes.Buffer
	for i := range 10 {
		b.WriteString(`data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"word` + string(rune('0'+i)) + ` "}}]}` + "\n\n")
	}
	b.WriteString(`data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":52,"completion_tokens":10,"total_tokens":62}}` + "\n\n")
	b.WriteString("data: [DONE]\n\n")
	return b.Bytes()
}()

func newBenchUpstream(b *testing.B) *benchUpstream {
	u := &benchUpstream{}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	u.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	u.srv.Start()
	b.Cleanup(u.srv.Close)
	return u
}

func (u *benchUpstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if bytes.Contains(body, []byte(`"stream":true`)) {
		w.Header().Set("Content-Type", "text/event-stream")
		// Event by event, flushed, as a real model streams.
		for ev := range bytes.SplitAfterSeq(benchEvents, []byte("\n\n")) {
			if len(ev) == 0 {
				continue
			}
			_, _ = w.Write(ev)
			w.(http.Flusher).Flush()
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, benchCompletion)
}

// benchEnv is a data plane whose every deployment points at one benchUpstream, with
// a client that keeps enough idle connections for the parallel benchmarks.
type benchEnv struct {
	*env
	up    *benchUpstream
	authz string
}

func newBenchEnv(b *testing.B, configure func(*app.Config)) *benchEnv {
	b.Helper()
	e := newEnv(b, envOptions{region: "eu", quiet: true, configure: configure})
	up := newBenchUpstream(b)
	s := e.snapshot()
	for i := range s.Deployments {
		s.Deployments[i].BaseURL = up.srv.URL
	}
	for i := range s.Tiers { // limits on, far from reach: the common case
		s.Tiers[i].RequestsPerMinute, s.Tiers[i].TokensPerHour, s.Tiers[i].MaxConcurrentRequests = 1<<40, 1<<50, 1<<20
	}
	e.publish(b, s)
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}
	b.Cleanup(tr.CloseIdleConnections)
	e.client = &http.Client{Transport: tr}
	return &benchEnv{env: e, up: up, authz: "Bearer " + e.token(b, "premium-app")}
}

// call sends one chat completion and reads the whole answer into buf.
func (e *benchEnv) call(body []byte, stream bool, buf *bytes.Buffer) error {
	req, err := http.NewRequest(http.MethodPost, e.base+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", e.authz)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	buf.Reset()
	_, err = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return fmt.Errorf("read answer: %w", err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %d: %s", resp.StatusCode, buf.Bytes())
	case stream && !bytes.HasSuffix(buf.Bytes(), []byte("data: [DONE]\n\n")):
		return fmt.Errorf("stream did not end in [DONE]: %q", buf.Bytes())
	case !stream && !bytes.Contains(buf.Bytes(), []byte("chatcmpl-bench")):
		return fmt.Errorf("answer is not the upstream's: %s", buf.Bytes())
	}
	return nil
}

func benchmarkChat(b *testing.B, stream bool, parallelism int) {
	benchmarkChatWith(b, stream, parallelism, nil)
}

// benchmarkChatWith is benchmarkChat on a data plane whose config configure changes.
func benchmarkChatWith(b *testing.B, stream bool, parallelism int, configure func(*app.Config)) {
	e := newBenchEnv(b, configure)
	body := benchBody(stream)
	var buf bytes.Buffer
	if err := e.call(body, stream, &buf); err != nil { // fetches the JWKS
		b.Fatal(err)
	}
	conns := e.up.conns.Load()
	b.ReportAllocs()
	b.ResetTimer()
	if parallelism == 0 {
		for b.Loop() {
			if err := e.call(body, stream, &buf); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		b.SetParallelism(parallelism)
		b.RunParallel(func(pb *testing.PB) {
			var buf bytes.Buffer
			for pb.Next() {
				if err := e.call(body, stream, &buf); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.StopTimer()
	// New upstream connections after warm-up; near zero when the gateway's
	// connection pool keeps up with the concurrency.
	b.ReportMetric(float64(e.up.conns.Load()-conns), "upstream-dials")
}

// BenchmarkChat is one non-streaming chat completion at a time.
func BenchmarkChat(b *testing.B) { benchmarkChat(b, false, 0) }

// BenchmarkChatStream is one streamed chat completion (11 events) at a time.
func BenchmarkChatStream(b *testing.B) { benchmarkChat(b, true, 0) }

// BenchmarkChatParallel is non-streaming chat completions from 16 goroutines per
// CPU (32 on the 2-core bench machine, make bench's c=32).
func BenchmarkChatParallel(b *testing.B) { benchmarkChat(b, false, 16) }

// BenchmarkChatTraced is BenchmarkChat with every request traced (sampled) and its
// spans exported over OTLP/HTTP to an in-process collector: the cost of tracing
// on, against BenchmarkChat's tracing off.
func BenchmarkChatTraced(b *testing.B) {
	rcv := newOTLPReceiver(b, tracing.ProtocolHTTP)
	benchmarkChatWith(b, false, 0, func(c *app.Config) { c.Tracing.Endpoint = rcv.endpoint })
}
