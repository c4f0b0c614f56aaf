package mockupstream_test

import (
	"context"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

// TestOpenAISDK checks the mock against the official SDK, so that tests which point the
// SDK at the gateway (and the gateway at the mock) exercise the real wire protocol.
func TestOpenAISDK(t *testing.T) {
	const key = "sdk-test-key"
	m, url := start(t, mockupstream.Options{Name: "sdk", RequireKey: key})
	client := openai.NewClient(
		option.WithBaseURL(url+"/v1/"),
		option.WithAPIKey(key),
		option.WithMaxRetries(0),
	)
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello there")},
	}
	const reply = "mock reply from sdk to 1 messages"

	t.Run("chat", func(t *testing.T) {
		c, err := client.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Choices) != 1 || c.Choices[0].Message.Content != reply {
			t.Fatalf("choices %+v", c.Choices)
		}
		if c.Usage.PromptTokens != 3 || c.Usage.CompletionTokens != 7 || c.Usage.TotalTokens != 10 {
			t.Errorf("usage %+v", c.Usage)
		}
	})

	t.Run("chat stream", func(t *testing.T) {
		p := params
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := client.Chat.Completions.NewStreaming(ctx, p)
		defer stream.Close()
		var acc openai.ChatCompletionAccumulator
		chunks := 0
		for stream.Next() {
			acc.AddChunk(stream.Current())
			chunks++
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if chunks < 3 {
			t.Errorf("%d chunks, want several", chunks)
		}
		if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != reply {
			t.Fatalf("accumulated %+v", acc.Choices)
		}
		if acc.Usage.TotalTokens != 10 {
			t.Errorf("usage %+v", acc.Usage)
		}
	})

	t.Run("embeddings", func(t *testing.T) {
		e, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
			Model: "text-embedding-3-small",
			Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"alpha", "beta"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Data) != 2 {
			t.Fatalf("%d embeddings", len(e.Data))
		}
		want := mockupstream.Vector([]byte("alpha"))
		got := e.Data[0].Embedding
		if len(got) != len(want) {
			t.Fatalf("%d dims, want %d", len(got), len(want))
		}
		for i := range want {
			if float32(got[i]) != want[i] {
				t.Fatalf("embedding[0] = %v, want %v", got, want)
			}
		}
		if e.Usage.PromptTokens != 2 {
			t.Errorf("usage %+v", e.Usage)
		}
	})

	t.Run("wrong key", func(t *testing.T) {
		bad := openai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey("wrong"), option.WithMaxRetries(0))
		_, err := bad.Chat.Completions.New(ctx, params)
		apiErr, ok := err.(*openai.Error)
		if !ok || apiErr.StatusCode != 401 || apiErr.Code != "invalid_api_key" {
			t.Fatalf("err %v, want a 401 invalid_api_key *openai.Error", err)
		}
	})

	for _, r := range m.Requests() {
		if !r.HadAuth || r.Header.Get("Authorization") != "" {
			t.Errorf("request %+v: want HadAuth and no recorded Authorization", r)
		}
	}
}
