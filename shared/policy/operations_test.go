package policy

import (
	"slices"
	"testing"
)

func TestRequestOperations(t *testing.T) {
	tests := []struct {
		name    string
		allowed []string
		want    []string
	}{
		{name: "completion is all text generation", allowed: []string{OpCompletion}, want: []string{OpChat, OpTextCompletion, OpMessages}},
		{name: "the defaults are everything", allowed: DefaultOperations, want: []string{OpChat, OpTextCompletion, OpMessages, OpEmbeddings}},
		{name: "chat is only chat", allowed: []string{OpChat}, want: []string{OpChat}},
		{name: "fine names mix", allowed: []string{OpMessages, OpEmbeddings}, want: []string{OpMessages, OpEmbeddings}},
		{name: "no duplicates", allowed: []string{OpChat, OpCompletion, OpChat}, want: []string{OpChat, OpTextCompletion, OpMessages}},
		{name: "unknown names allow nothing", allowed: []string{"fine_tuning", ""}, want: []string{}},
		{name: "nothing", allowed: nil, want: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RequestOperations(tt.allowed); !slices.Equal(got, tt.want) {
				t.Fatalf("RequestOperations(%q) = %q, want %q", tt.allowed, got, tt.want)
			}
		})
	}
	for _, op := range Operations {
		if len(RequestOperations([]string{op})) == 0 {
			t.Errorf("the tier operation %q allows no request operation", op)
		}
	}
}
