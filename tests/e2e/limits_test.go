package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tiktoken-go/tokenizer"

	"github.com/portcullis-gw/portcullis/shared/natsauth"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

// threeWorkers are two eu data planes and one us data plane.
var threeWorkers = withWorkers(worker{name: "eu", region: "eu"}, worker{name: "eu-2", region: "eu"}, worker{name: "us", region: "us"})

// limitedClient creates tier <id>-tier with the given limits (0 means a limit far
// out of reach) and a client id on it with the given residency ("" means "global",
// no restriction), and returns the client's token once every data plane knows it.
func (s *stack) limitedClient(t *testing.T, id, residency string, rpm, tph, conc int64) string {
	t.Helper()
	orHigh := func(v int64) int64 {
		if v == 0 {
			return 1 << 40
		}
		return v
	}
	s.mustAdmin(t, 201, "POST", "/tiers", map[string]any{
		"name": id + "-tier", "requests_per_minute": orHigh(rpm), "tokens_per_hour": orHigh(tph),
		"max_concurrent_requests": orHigh(conc), "allowed_models": []string{"gpt-4o-mini", "gpt-4o"},
	})
	if residency == "" {
		residency = "global"
	}
	client := map[string]any{"client_id": id, "tenant": "demo", "tier": id + "-tier", "residency": residency}
	s.mustAdmin(t, 201, "POST", "/clients", client)
	token := s.mint(t, id)
	for name := range s.dp {
		waitfor.Within(t, 10*time.Second, name+" knows "+id, func() bool {
			// A worker of a region the client's residency does not allow knows it
			// when it refuses it at the door.
			st := s.call(t, name, token, "GET", "/v1/models", nil).Status
			return st == http.StatusOK || st == http.StatusMisdirectedRequest
		})
	}
	return token
}

// onlyInEU removes every deployment of model but openai-eu's, so that a client
// without residency is served by the eu upstream through every worker (an eu client
// would be refused at the us worker's door). The clients a test creates afterwards
// come with a later policy version: once a worker knows them, it has this change.
func (s *stack) onlyInEU(t *testing.T, model string) {
	t.Helper()
	var models struct {
		Items []struct {
			ID         string `json:"id"`
			Name       string `json:"name"`
			Deployment string `json:"deployment"`
		} `json:"items"`
	}
	s.admin(t, "GET", "/models?limit=500", nil, &models)
	for _, m := range models.Items {
		if m.Name == model && m.Deployment != "openai-eu" {
			s.mustAdmin(t, http.StatusNoContent, "DELETE", "/models/"+url.PathEscape(m.ID), nil)
		}
	}
}

// waitLiveWorkers waits until every data plane sizes its leases for all of them, as
// they do one heartbeat interval after the last one started.
func (s *stack) waitLiveWorkers(t *testing.T) {
	t.Helper()
	want := fmt.Sprintf("portcullis_limits_live_workers %d", len(s.dp))
	for name, dp := range s.dp {
		waitfor.Within(t, 20*time.Second, name+" to see every worker", func() bool {
			return strings.Contains(metrics(t, dp.MetricsAddr()), want)
		})
	}
}

// metrics returns the /metrics page of the data plane whose metrics listener is on
// addr (dpapp.App.MetricsAddr; /metrics is not on the API's port).
func metrics(t *testing.T, addr string) string {
	t.Helper()
	if addr == "" {
		t.Fatal("the data plane has no metrics listener")
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET http://%s/metrics: %d", addr, resp.StatusCode)
	}
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		b.WriteString(sc.Text())
		b.WriteByte('\n')
	}
	return b.String()
}

// counter reads a global limit counter from PC_LIMITS.
func (s *stack) counter(t *testing.T, key string) int64 {
	t.Helper()
	nc := s.natsConnect(t, natsauth.ControlPlane())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), natsnames.LimitsBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// tokensKey is client's counter of tokens in this hour (by the limiters' clock).
func (s *stack) tokensKey(client string) string {
	return "tph." + client + "." + strconv.FormatInt(s.clock().Truncate(time.Hour).Unix(), 10)
}

// rateError decodes a 429's OpenAI error.
func rateError(t *testing.T, r gatewayResponse) (code, typ string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Type string } `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Fatalf("429 body %q: %v", r.Body, err)
	}
	return e.Error.Code, e.Error.Type
}

func TestExactRequestsPerMinuteAcrossWorkersAndRegions(t *testing.T) {
	t.Parallel()
	s := startStack(t, threeWorkers)
	s.seed(t)
	s.waitReady(t)
	const runs, limit, perWorker = 20, 50, 40
	tokens := make([]string, runs)
	for i := range runs {
		tokens[i] = s.limitedClient(t, "rpm-"+strconv.Itoa(i), "", limit, 0, 0)
	}
	s.waitLiveWorkers(t)
	upstreamSeen := func() int { return len(s.upstream["eu"].Requests()) + len(s.upstream["us"].Requests()) }
	for run := range runs {
		before := upstreamSeen()
		var admitted, denied atomic.Int64
		var wg sync.WaitGroup
		for name := range s.dp {
			for range perWorker {
				wg.Go(func() {
					time.Sleep(time.Duration(rand.IntN(5000)) * time.Microsecond)
					sent := s.clock()
					r := s.call(t, name, tokens[run], "POST", "/v1/chat/completions", chatBody("gpt-4o-mini"))
					switch r.Status {
					case http.StatusOK:
						admitted.Add(1)
					case http.StatusTooManyRequests:
						denied.Add(1)
						end := sent.Truncate(time.Minute).Add(time.Minute)
						leftAtSend, leftNow := end.Sub(sent).Seconds(), end.Sub(s.clock()).Seconds()
						ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
						// Whole seconds, rounded up, until the window frees up at the
						// moment of refusal, which came between sending and now.
						if err != nil || ra < 1 || float64(ra) < leftNow || float64(ra) > leftAtSend+1 {
							t.Errorf("Retry-After %q with %.1fs left in the minute when sent, %.1fs now", r.Header.Get("Retry-After"), leftAtSend, leftNow)
						}
						if code, typ := rateError(t, r); code != "rate_limit_exceeded" || typ != "requests" {
							t.Errorf("429 code %q type %q, want rate_limit_exceeded/requests", code, typ)
						}
						if r.Header.Get("X-Ratelimit-Remaining-Requests") != "0" || r.Header.Get("X-Ratelimit-Limit-Requests") != "50" {
							t.Errorf("429 rate headers: limit %q remaining %q", r.Header.Get("X-Ratelimit-Limit-Requests"), r.Header.Get("X-Ratelimit-Remaining-Requests"))
						}
					default:
						t.Errorf("status %d: %s", r.Status, r.Body)
					}
				})
			}
		}
		wg.Wait()
		if admitted.Load() != limit || denied.Load() != 3*perWorker-limit {
			t.Fatalf("run %d: %d admitted, %d denied; want exactly %d admitted", run, admitted.Load(), denied.Load(), limit)
		}
		if got := upstreamSeen() - before; got != limit {
			t.Fatalf("run %d: the upstreams saw %d requests, want %d", run, got, limit)
		}
	}
}

// holdingStack is a stack with three workers whose eu upstream holds each request
// for hold.
func holdingStack(t *testing.T, hold time.Duration) *stack {
	s := startStack(t, threeWorkers, withUpstream("eu", mockupstream.Options{HoldDelay: hold}))
	s.seed(t)
	s.waitReady(t)
	return s
}

func TestExactConcurrencyAcrossWorkers(t *testing.T) {
	t.Parallel()
	s := holdingStack(t, 500*time.Millisecond)
	s.onlyInEU(t, "gpt-4o-mini") // every worker, the us one included, calls the eu upstream
	token := s.limitedClient(t, "conc", "", 0, 0, 5)
	s.waitLiveWorkers(t)
	var ok, denied atomic.Int64
	var wg sync.WaitGroup
	for name := range s.dp {
		for range 10 {
			wg.Go(func() {
				for range 8 {
					r := s.call(t, name, token, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini"))
					switch r.Status {
					case http.StatusOK:
						ok.Add(1)
						return
					case http.StatusTooManyRequests:
						denied.Add(1)
						if code, typ := rateError(t, r); code != "rate_limit_exceeded" || typ != "concurrency" {
							t.Errorf("429 code %q type %q, want rate_limit_exceeded/concurrency", code, typ)
						}
						if r.Header.Get("Retry-After") == "" {
							t.Error("concurrency 429 without Retry-After")
						}
						time.Sleep(time.Duration(50+rand.IntN(200)) * time.Millisecond)
					default:
						t.Errorf("status %d: %s", r.Status, r.Body)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	peak := s.upstream["eu"].MaxInFlight()
	t.Logf("%d admitted, %d denied; peak in flight upstream %d", ok.Load(), denied.Load(), peak)
	if peak > 5 {
		t.Fatalf("the upstream saw %d requests in flight at once; the limit is 5", peak)
	}
	if peak < 5 || denied.Load() == 0 {
		t.Fatalf("peak %d, %d denials: the limit was never reached", peak, denied.Load())
	}
}

func TestCrashedWorkersSlotsComeBack(t *testing.T) {
	t.Parallel()
	s := startStack(t, threeWorkers, withUpstream("eu", mockupstream.Options{SlowDelay: time.Minute}))
	s.seed(t)
	s.waitReady(t)
	s.onlyInEU(t, "gpt-4o-mini")
	token := s.limitedClient(t, "crash", "", 0, 0, 5)
	up := s.upstream["eu"]
	up.SetFailure(mockupstream.FailSlow) // every request hangs until its caller goes away

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	hang := func(worker string) <-chan int { // sends the status if the request ends
		done := make(chan int, 1)
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+s.dp[worker].Addr()+"/v1/chat/completions",
				strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		})
		return done
	}
	for i := range 3 {
		hang("eu-2")
		waitfor.Within(t, 5*time.Second, "request held upstream", func() bool { return up.InFlight() == i+1 })
	}
	// eu-2 holds 3 of the 5 slots: 2 more fit, the next is refused.
	hang("eu")
	hang("us")
	waitfor.Within(t, 5*time.Second, "5 requests held upstream", func() bool { return up.InFlight() == 5 })
	if r := s.call(t, "eu", token, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini")); r.Status != http.StatusTooManyRequests {
		t.Fatalf("6th concurrent request: status %d, want 429", r.Status)
	}

	s.dp["eu-2"].Kill()
	killed := time.Now()
	waitfor.Within(t, 5*time.Second, "the killed worker's requests to end upstream", func() bool { return up.InFlight() == 2 })
	// Within 15 s the client can hold all 5 slots again through the live workers.
	took := waitfor.Within(t, 15*time.Second, "all 5 slots usable again", func() bool {
		before := up.InFlight()
		st := hang([]string{"eu", "us"}[before%2])
		deadline := time.After(2 * time.Second)
		for {
			select {
			case code := <-st:
				if code != http.StatusTooManyRequests {
					t.Fatalf("probe ended with status %d, want 429 or held", code)
				}
				time.Sleep(200 * time.Millisecond)
				return false
			case <-deadline:
				t.Fatal("a probe was neither refused nor held upstream within 2s")
			default:
				if n := up.InFlight(); n > before {
					return n == 5
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	})
	t.Logf("all 5 slots usable %s after the kill (%s of waiting)", time.Since(killed).Round(100*time.Millisecond), took.Round(100*time.Millisecond))
}

// o200k counts tokens as the gateway does.
func o200k(t *testing.T, text string) int64 {
	t.Helper()
	enc, err := tokenizer.Get(tokenizer.O200kBase)
	if err != nil {
		t.Fatal(err)
	}
	n, err := enc.Count(text)
	if err != nil {
		t.Fatal(err)
	}
	return int64(n)
}

func TestTokensPerHour(t *testing.T) {
	t.Parallel()
	s := startStack(t, withUpstream("us", mockupstream.Options{NoUsage: true}))
	s.seed(t)
	s.waitReady(t)
	const prompt = "alpha beta gamma delta"
	body := func(stream, includeUsage bool) map[string]any {
		b := map[string]any{"model": "gpt-4o-mini", "max_tokens": 100,
			"messages": []map[string]string{{"role": "user", "content": prompt}}}
		if stream {
			b["stream"] = true
		}
		if includeUsage {
			b["stream_options"] = map[string]any{"include_usage": true}
		}
		return b
	}
	// The mock reports a prompt of 4 words + 1 and a reply of 7 words.
	const reported = 5 + 7
	// What the gateway counts when the upstream reports nothing: OpenAI's chat
	// accounting of the prompt (3 per message plus its role and content, 3 for the
	// reply) plus the delivered text.
	estimatedPrompt := 3 + o200k(t, "user") + o200k(t, prompt) + 3

	t.Run("admissions stop at the budget and settle to reported usage", func(t *testing.T) {
		token := s.limitedClient(t, "tok-plain", "eu", 0, 1000, 0)
		var sum int64
		for i := 0; ; i++ {
			if i > 200 {
				t.Fatal("admissions never stopped")
			}
			r := s.call(t, "eu", token, "POST", "/v1/chat/completions", body(false, false))
			if r.Status == http.StatusTooManyRequests {
				if code, typ := rateError(t, r); code != "rate_limit_exceeded" || typ != "tokens" {
					t.Fatalf("429 code %q type %q", code, typ)
				}
				break
			}
			if r.Status != http.StatusOK {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			var out struct {
				Usage struct {
					TotalTokens int64 `json:"total_tokens"`
				} `json:"usage"`
			}
			if err := json.Unmarshal(r.Body, &out); err != nil || out.Usage.TotalTokens != reported {
				t.Fatalf("usage %+v (%v), want %d", out.Usage, err, reported)
			}
			sum += out.Usage.TotalTokens
			if got := r.Header.Get("X-Ratelimit-Limit-Tokens"); got != "1000" {
				t.Fatalf("x-ratelimit-limit-tokens %q", got)
			}
		}
		reservation := estimatedPrompt + 100
		if sum > 1000 || 1000-sum >= reservation {
			t.Fatalf("admitted %d tokens of 1000 before refusing a %d-token reservation", sum, reservation)
		}
		waitfor.Within(t, 10*time.Second, "the settled total in PC_LIMITS", func() bool { return s.counter(t, s.tokensKey("tok-plain")) == sum })
	})

	t.Run("stream settles from the usage chunk the client never sees", func(t *testing.T) {
		token := s.limitedClient(t, "tok-stream", "eu", 0, 1000, 0)
		r := s.call(t, "eu", token, "POST", "/v1/chat/completions", body(true, false))
		if r.Status != http.StatusOK || !strings.HasSuffix(string(r.Body), "data: [DONE]\n\n") {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		if strings.Contains(string(r.Body), `"usage":{`) {
			t.Fatalf("a client that did not ask got the usage chunk: %s", r.Body)
		}
		reqs := s.upstream["eu"].Requests()
		if so := string(reqs[len(reqs)-1].StreamOptions); !strings.Contains(so, `"include_usage":true`) {
			t.Fatalf("upstream got stream_options %s", so)
		}
		waitfor.Within(t, 10*time.Second, "the settled total", func() bool { return s.counter(t, s.tokensKey("tok-stream")) == reported })

		r = s.call(t, "eu", token, "POST", "/v1/chat/completions", body(true, true))
		if !strings.Contains(string(r.Body), `"usage":{`) {
			t.Fatalf("a client that asked for usage did not get it: %s", r.Body)
		}
		waitfor.Within(t, 10*time.Second, "the settled total", func() bool { return s.counter(t, s.tokensKey("tok-stream")) == 2*reported })
	})

	t.Run("stream without usage settles from the tokenizer", func(t *testing.T) {
		token := s.limitedClient(t, "tok-nousage", "us", 0, 1000, 0)
		r := s.call(t, "us", token, "POST", "/v1/chat/completions", body(true, true))
		if r.Status != http.StatusOK || strings.Contains(string(r.Body), `"usage":{`) {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		want := estimatedPrompt + o200k(t, "mock reply from mock-us to 1 messages")
		waitfor.Within(t, 10*time.Second, fmt.Sprintf("the settled total to be %d", want), func() bool { return s.counter(t, s.tokensKey("tok-nousage")) == want })
	})

	t.Run("a cut stream settles what was delivered", func(t *testing.T) {
		token := s.limitedClient(t, "tok-cut", "us", 0, 1000, 0)
		s.upstream["us"].SetFailure(mockupstream.FailCutStream)
		defer s.upstream["us"].SetFailure(mockupstream.FailNone)
		r := s.call(t, "us", token, "POST", "/v1/chat/completions", body(true, false))
		if strings.Contains(string(r.Body), "[DONE]") {
			t.Fatalf("a cut stream ended cleanly: %s", r.Body)
		}
		want := estimatedPrompt + o200k(t, "mock") // the role chunk and the first word arrived
		waitfor.Within(t, 10*time.Second, fmt.Sprintf("the settled total to be %d", want), func() bool { return s.counter(t, s.tokensKey("tok-cut")) == want })
	})
}

func TestNATSOutageFailPolicy(t *testing.T) {
	t.Parallel()
	s := startStack(t, withNATS(), withWorkers(
		worker{name: "closed", region: "eu"},
		worker{name: "open", region: "eu", failPolicy: "fail_open"},
	))
	s.seed(t)
	s.waitReady(t)
	closedTok := s.limitedClient(t, "fc", "", 10, 0, 0)
	openTok := s.limitedClient(t, "fo", "", 10, 0, 0)

	s.nats.Stop()

	r := s.call(t, "closed", closedTok, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini"))
	if r.Status != http.StatusServiceUnavailable || r.code() != "limits_unavailable" {
		t.Fatalf("fail_closed during the outage: %d %s", r.Status, r.Body)
	}
	for i := range 10 {
		r := s.call(t, "open", openTok, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini"))
		if r.Status != http.StatusOK {
			t.Fatalf("fail_open request %d during the outage: %d %s", i, r.Status, r.Body)
		}
	}
	if r := s.call(t, "open", openTok, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini")); r.Status != http.StatusTooManyRequests {
		t.Fatalf("fail_open still holds each worker to the limit: 11th request %d", r.Status)
	}
	for name, dp := range s.dp {
		if m := metrics(t, dp.MetricsAddr()); !strings.Contains(m, "portcullis_limits_available 0") {
			t.Errorf("%s /metrics does not show the counters unavailable", name)
		}
	}
	if m := metrics(t, s.dp["open"].MetricsAddr()); !strings.Contains(m, "portcullis_limits_fail_open_admissions_total 10") {
		t.Errorf("fail_open admissions not counted in /metrics")
	}
}

func TestLimitOverride(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	s.seed(t)
	s.waitReady(t)
	token := s.limitedClient(t, "ovr", "", 0, 0, 0)
	for range 3 { // far from its tier's limit
		if r := s.call(t, "eu", token, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini")); r.Status != http.StatusOK {
			t.Fatalf("status %d", r.Status)
		}
	}
	set := time.Now() // before the control plane sets the expiry, so lifted is not short
	s.mustAdmin(t, 200, "PUT", "/clients/ovr/limit-override", map[string]any{
		"requests_per_minute": 3, "ttl_seconds": 4, "reason": "e2e throttle",
	})
	waitfor.Within(t, 2*time.Second, "the override to throttle the client", func() bool {
		r := s.call(t, "eu", token, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini"))
		if r.Status == http.StatusTooManyRequests && !strings.Contains(string(r.Body), "override") {
			t.Fatalf("429 does not mention the override: %s", r.Body)
		}
		return r.Status == http.StatusTooManyRequests && r.Header.Get("X-Ratelimit-Limit-Requests") == "3"
	})
	t.Logf("override in force %s after it was set", time.Since(set).Round(time.Millisecond))
	// The us worker may take the new policy a moment after the eu one: wait for it
	// too, so that a 200 below means the override lifted, not that it had not come.
	waitfor.Within(t, 2*time.Second, "the override to throttle the client on the us worker too", func() bool {
		return s.call(t, "us", token, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini")).Status == http.StatusTooManyRequests
	})
	waitfor.Within(t, 10*time.Second, "the override to lift itself", func() bool {
		return s.call(t, "us", token, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini")).Status == http.StatusOK
	})
	if lifted := time.Since(set); lifted < 4*time.Second {
		t.Fatalf("the override lifted after %s, before it expired", lifted)
	}
}
