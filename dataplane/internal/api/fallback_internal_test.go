package api

import (
	"testing"

	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// TestServes: a fallback deployment must be able to answer the request as it is;
// otherwise an outage would turn into a 400 from the fallback.
func TestServes(t *testing.T) {
	route := func(kind string) policycache.Route {
		return policycache.Route{Deployment: &policycache.Deployment{ProviderKind: kind}}
	}
	tests := []struct {
		name string
		kind string
		op   string
		path string
		want bool
	}{
		{name: "chat on openai", kind: policy.ProviderOpenAI, op: policy.OpChat, path: upstream.PathChatCompletions, want: true},
		{name: "chat on ollama", kind: policy.ProviderOllama, op: policy.OpChat, path: upstream.PathChatCompletions, want: true},
		{name: "chat translated for anthropic", kind: policy.ProviderAnthropic, op: policy.OpChat, path: upstream.PathChatCompletions, want: true},
		{name: "embeddings not on anthropic", kind: policy.ProviderAnthropic, op: policy.OpEmbeddings, path: upstream.PathEmbeddings, want: false},
		{name: "legacy completions not on anthropic", kind: policy.ProviderAnthropic, op: policy.OpTextCompletion, path: upstream.PathCompletions, want: false},
		{name: "messages on anthropic", kind: policy.ProviderAnthropic, op: policy.OpMessages, path: upstream.PathMessages, want: true},
		{name: "messages not on ollama", kind: policy.ProviderOllama, op: policy.OpMessages, path: upstream.PathMessages, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := serves(route(tt.kind), tt.op, tt.path); got != tt.want {
				t.Fatalf("serves(%s, %s, %s) = %v, want %v", tt.kind, tt.op, tt.path, got, tt.want)
			}
		})
	}
}
