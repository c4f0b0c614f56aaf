package api

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// A translator carries one request from the API the client speaks to the API of the
// provider a route's deployment runs, and the answer back: one type per pair, in the
// style of Envoy AI Gateway's translator per schema pair. A translator is made for
// each attempt by its pair's translation (see translations), so it may keep the
// attempt's state: its stream meter, the captured answer, the stream translator.
//
// Adding a provider means one file with a type that implements translator and a
// constructor, plus one line in translations (see docs/data-plane.md).
type translator interface {
	// request returns the path and body of the upstream call: req, as the client
	// sent it, addressed to upstreamModel. An error is the client's (a 400 naming
	// the field the provider cannot express); the attempt is not made.
	request(req *request, upstreamModel string) (path string, body []byte, err error)
	// relay writes resp, the upstream's answer, to the client in the client's API:
	// a non-streamed answer, or a stream event by event that ends with the API's
	// error event when the upstream breaks it off (wrapping errStreamNotStarted if
	// it broke before the first event). Answers the client must not see as they are
	// (5xx, 429, a refused key) become errors; see upstreamFailure. Each streamed
	// text delta goes to the exchange's watcher.
	relay(c echo.Context, resp *http.Response, deployment string) error
	// started reports whether a successful answer began to reach the client.
	started() bool
	// usage returns the answer's prompt and completion tokens: as the upstream
	// reported them, else estimated from prompt (the request's estimate) and the
	// delivered text. known is false when neither can be said; the reservation
	// stands then.
	usage(prompt int64) (in, out int64, known bool)
}

// exchange is one request on its way through the request path: what its
// translators are given besides the request (how much of the answer to keep, who
// watches its text), and its metering, which settles the token reservation.
type exchange struct {
	req *request
	// capture: keep a non-streamed answer (up to captureLimit) to read its usage,
	// for the token budget or the audit event.
	capture bool
	// watch gets each streamed text delta of the answer; nil: nobody watches.
	watch StreamWatcher
	// guard is the client's guardrails on this request; nil: none.
	guard *guarded

	prompt  int64      // estimated prompt tokens; 0 when the client has no token limit
	limited bool       // the client has a token limit: the answer's tokens settle its reservation
	tr      translator // the translator of the attempt whose answer is relayed; nil before one

	// counted is what tr's usage said, once asked (the answer is complete by
	// then): used and split both need it, and it may parse the whole answer.
	counted translator
	in, out int64
	known   bool
}

// usage is x.tr's usage of the answer, read once.
func (x *exchange) usage() (in, out int64, known bool) {
	if x.counted != x.tr {
		x.in, x.out, x.known = x.tr.usage(x.prompt)
		x.counted = x.tr
	}
	return x.in, x.out, x.known
}

// used is the number of tokens the request consumed, to settle a reservation of
// reserved: what the upstream reported, else the prompt estimate plus the
// delivered completion counted with the tokenizer, else (when neither can be said)
// the reservation. An answer that never started consumed nothing.
func (x *exchange) used(reserved int64) int64 {
	if !x.limited || x.tr == nil || !x.tr.started() {
		return 0
	}
	in, out, known := x.usage()
	if !known {
		return reserved
	}
	return in + out
}

// split is the request's prompt and completion tokens, for the audit event: as the
// upstream reported them, else estimated (the prompt estimate, 0 for a client
// without a token limit, and the delivered completion). An answer that never
// started used none.
func (x *exchange) split() (in, out int64) {
	if x.tr == nil || !x.tr.started() {
		return 0, 0
	}
	in, out, known := x.usage()
	if !known {
		return x.prompt, 0
	}
	return in, out
}

// A clientAPI is an API family clients speak to the gateway.
type clientAPI uint8

const (
	apiOpenAI    clientAPI = iota // chat completions, completions, embeddings
	apiAnthropic                  // the Messages API
)

// translation is one pair of client API and provider kind, with the operations it
// can carry (nil: every one of the client API's), how the provider takes its key,
// and the constructor of its translators.
type translation struct {
	api  clientAPI
	kind string
	ops  []string
	key  upstream.KeyHeader
	new  func(x *exchange) translator
}

// translations registers every pair the gateway can carry. A pair not listed is
// not served: such a route is no candidate for a fallback, and a request routed to
// it is a 400.
var translations = []translation{
	{api: apiOpenAI, kind: policy.ProviderOpenAI, key: upstream.BearerKey, new: newPassthrough},
	{api: apiOpenAI, kind: policy.ProviderOllama, key: upstream.BearerKey, new: newPassthrough}, // Ollama's OpenAI-compatible API
	{api: apiOpenAI, kind: policy.ProviderAnthropic, ops: []string{policy.OpChat}, key: upstream.AnthropicKey, new: newChatToMessages},
	{api: apiAnthropic, kind: policy.ProviderAnthropic, key: upstream.AnthropicKey, new: newMessages},
}

// translationFor returns the translation that carries op of api to a deployment of
// kind, and false when there is none.
func translationFor(api clientAPI, kind, op string) (*translation, bool) {
	for i := range translations {
		t := &translations[i]
		if t.api == api && t.kind == kind && (t.ops == nil || slices.Contains(t.ops, op)) {
			return t, true
		}
	}
	return nil, false
}

// notServed is the error of a request whose route has no translation: a 400 when
// the model's deployment cannot carry the request's API or operation, a 503 when
// the gateway has no translator for the deployment's provider kind at all.
func notServed(req *request, dep *policycache.Deployment) error {
	if !slices.ContainsFunc(translations, func(t translation) bool { return t.kind == dep.ProviderKind }) {
		return apierr.Wrap(apierr.UpstreamUnavailable, fmt.Errorf("deployment %s: provider kind %q is not supported", dep.Name, dep.ProviderKind),
			"the upstream serving this model is not available")
	}
	if req.api == apiAnthropic {
		return apierr.New(apierr.InvalidRequest, "the model %q is not served by an Anthropic deployment; use /v1/chat/completions", req.Model)
	}
	return apierr.New(apierr.InvalidRequest, "the model %q does not serve the %s operation", req.Model, req.op)
}
