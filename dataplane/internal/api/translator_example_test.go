package api

import (
	"testing"

	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// toExample is the example of docs/data-plane.md: a provider that speaks the OpenAI
// wire protocol under /api.
type toExample struct{ passthrough }

func newToExample(x *exchange) translator { return &toExample{passthrough{x: x}} }

func (t *toExample) request(req *request, upstreamModel string) (string, []byte, error) {
	_, body, err := t.passthrough.request(req, upstreamModel)
	return "/api" + req.path, body, err
}

// TestAddingAProvider: a new provider is one translator type and one registration
// line; the rest of the request path needs no change.
func TestAddingAProvider(t *testing.T) {
	const kind = "example"
	saved := translations
	translations = append(translations[:len(translations):len(translations)],
		translation{api: apiOpenAI, kind: kind, ops: []string{policy.OpChat}, key: upstream.BearerKey, new: newToExample})
	t.Cleanup(func() { translations = saved })

	up := newUpstream(t, answerJSON(200, chatOK))
	g := newGateway(t, nil, nil, deployment{name: "ex-1", kind: kind, model: "gpt", up: up})
	if got := g.post(t, "/v1/chat/completions", chatGPT); got.status != 200 || got.deployment != "ex-1" {
		t.Fatalf("answer %d from %q: %s", got.status, got.deployment, got.body)
	}
	if calls := up.seen(); len(calls) != 1 || calls[0].Path != "/api/v1/chat/completions" || calls[0].Body["model"] != "gpt-up" {
		t.Fatalf("upstream calls %+v, want one to /api/v1/chat/completions for gpt-up", calls)
	}
	if got := g.post(t, "/v1/embeddings", embedGPT); got.status != 400 {
		t.Fatalf("embeddings to a chat-only provider answered %d, want 400", got.status)
	}
	translations = saved // without its registration the kind is unknown: 503
	if got := g.post(t, "/v1/chat/completions", chatGPT); got.status != 503 || got.code != "upstream_unavailable" {
		t.Fatalf("a kind without translators answered %d %s, want 503 upstream_unavailable", got.status, got.body)
	}
}
