package api

import (
	"testing"

	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
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
		api  clientAPI
		op   string
		want bool
	}{
		{name: "chat on openai", kind: policy.ProviderOpenAI, op: policy.OpChat, want: true},
		{name: "chat on ollama", kind: policy.ProviderOllama, op: policy.OpChat, want: true},
		{name: "chat translated for anthropic", kind: policy.ProviderAnthropic, op: policy.OpChat, want: true},
		{name: "embeddings not on anthropic", kind: policy.ProviderAnthropic, op: policy.OpEmbeddings, want: false},
		{name: "legacy completions not on anthropic", kind: policy.ProviderAnthropic, op: policy.OpTextCompletion, want: false},
		{name: "messages on anthropic", kind: policy.ProviderAnthropic, api: apiAnthropic, op: policy.OpMessages, want: true},
		{name: "messages not on ollama", kind: policy.ProviderOllama, api: apiAnthropic, op: policy.OpMessages, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := serves(route(tt.kind), &request{api: tt.api, op: tt.op}); got != tt.want {
				t.Fatalf("serves(%s, %s) = %v, want %v", tt.kind, tt.op, got, tt.want)
			}
		})
	}
}
