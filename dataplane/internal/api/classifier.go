package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// Classifier scores texts for prompt injection with a self-hosted model, for the
// injection family's policies that ask for it (classifier fail_open or
// fail_closed). It is safe for concurrent use.
type Classifier interface {
	// Score returns each text's injection score, from 0 to 1, in order.
	Score(ctx context.Context, texts []string) ([]float64, error)
}

// HTTPClassifier calls a classifier over HTTP: POST URL with {"texts": [...]},
// answered 200 with {"scores": [...]}, one score per text, within Timeout.
type HTTPClassifier struct {
	URL     string
	Timeout time.Duration
	Client  *http.Client // nil: one without redirects
}

// DefaultClassifierTimeout bounds a classifier call unless configured otherwise.
const DefaultClassifierTimeout = 300 * time.Millisecond

// maxClassifierAnswer bounds the classifier's answer.
const maxClassifierAnswer = 64 << 10

// classifierClient follows no redirect and keeps enough idle connections per host
// that a busy data plane does not pay a new handshake per call within the timeout.
var classifierClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport: &http.Transport{
		Proxy:               nil, // a self-hosted classifier is reached directly
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second,
	},
}

// Score calls the classifier.
func (h *HTTPClassifier) Score(ctx context.Context, texts []string) ([]float64, error) {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultClassifierTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	body, _ := json.Marshal(map[string]any{"texts": texts}) // strings always marshal
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("classifier request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	client := h.Client
	if client == nil {
		client = classifierClient
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, whose query may hold a credential
		}
		return nil, fmt.Errorf("classifier call: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxClassifierAnswer))
	if err != nil {
		return nil, fmt.Errorf("classifier answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("classifier answered %d", resp.StatusCode)
	}
	var out struct {
		Scores []float64 `json:"scores"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Scores) != len(texts) ||
		slices.ContainsFunc(out.Scores, func(s float64) bool { return s < 0 || s > 1 }) {
		return nil, errors.New("classifier answer is not {\"scores\": [...]} with one score from 0 to 1 per text")
	}
	return out.Scores, nil
}
