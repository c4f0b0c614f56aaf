package mockupstream

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
)

// EmbeddingDims is the length of every embedding the mock returns.
const EmbeddingDims = 8

type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
}

type embeddingList struct {
	Object string          `json:"object"`
	Data   []embedding     `json:"data"`
	Model  string          `json:"model"`
	Usage  *embeddingUsage `json:"usage,omitempty"`
}

type embeddingUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

type embedding struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float32, or a base64 string of little-endian float32s
}

// embeddingInput is one input to embed: the bytes its vector derives from and its tokens.
type embeddingInput struct {
	key    []byte
	tokens int
}

// embeddingInputs parses input, which OpenAI allows to be a string, an array of strings,
// an array of token ids or an array of token-id arrays.
func embeddingInputs(raw json.RawMessage) ([]embeddingInput, error) {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []embeddingInput{{key: []byte(one), tokens: countTokens(one)}}, nil
	}
	var strs []string
	if json.Unmarshal(raw, &strs) == nil && len(strs) > 0 {
		out := make([]embeddingInput, len(strs))
		for i, s := range strs {
			out[i] = embeddingInput{key: []byte(s), tokens: countTokens(s)}
		}
		return out, nil
	}
	var ids []int64
	if json.Unmarshal(raw, &ids) == nil && len(ids) > 0 {
		b, _ := json.Marshal(ids)
		return []embeddingInput{{key: b, tokens: len(ids)}}, nil
	}
	var idLists [][]int64
	if json.Unmarshal(raw, &idLists) == nil && len(idLists) > 0 {
		out := make([]embeddingInput, len(idLists))
		for i, l := range idLists {
			b, _ := json.Marshal(l)
			out[i] = embeddingInput{key: b, tokens: len(l)}
		}
		return out, nil
	}
	return nil, errInvalid("input", "'input' must be a string, an array of strings, or token arrays, and not empty")
}

// Vector returns the embedding the mock gives input: EmbeddingDims float32s of unit
// length derived from the SHA-256 of input.
func Vector(input []byte) []float32 {
	sum := sha256.Sum256(input)
	v := make([]float32, EmbeddingDims)
	var norm float64
	for i := range v {
		u := binary.BigEndian.Uint32(sum[i*4:])
		x := float64(u)/math.MaxUint32*2 - 1
		v[i] = float32(x)
		norm += x * x
	}
	norm = math.Sqrt(norm)
	if norm > 0 {
		for i := range v {
			v[i] = float32(float64(v[i]) / norm)
		}
	}
	return v
}

func encodeBase64(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[i*4:], math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// embeddings answers POST /v1/embeddings.
func (s *Server) embeddings(w http.ResponseWriter, r *http.Request, body []byte, fail Failure) error {
	var req embeddingRequest
	if err := decode(body, &req); err != nil {
		return err
	}
	if req.Model == "" {
		return errInvalid("model", "you must provide a model parameter")
	}
	if req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64" {
		return errInvalid("encoding_format", "'encoding_format' must be \"float\" or \"base64\"")
	}
	inputs, err := embeddingInputs(req.Input)
	if err != nil {
		return err
	}
	out := embeddingList{Object: "list", Model: req.Model, Data: make([]embedding, len(inputs))}
	var u embeddingUsage
	for i, in := range inputs {
		vec := Vector(in.key)
		var e any = vec
		if req.EncodingFormat == "base64" {
			e = encodeBase64(vec)
		}
		out.Data[i] = embedding{Object: "embedding", Index: i, Embedding: e}
		u.PromptTokens += in.tokens
	}
	u.TotalTokens = u.PromptTokens
	if !s.opts.NoUsage {
		out.Usage = &u
	}
	return writeJSON(w, out, fail)
}
