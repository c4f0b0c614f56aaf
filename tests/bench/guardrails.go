package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-gw/portcullis/tests/guardrails"
)

// ttftRequests is how many streamed requests the time-to-first-token phase sends
// to each of its targets, one at a time.
const ttftRequests = 200

// ttftResult is the time to first token of one target on the paced mock.
type ttftResult struct {
	Target   string
	Requests int
	P50, P99 time.Duration // to the first content delta
	WholeP50 time.Duration // to [DONE]
}

// ttftPhase measures the time to the first token of a streamed answer from the
// paced mock (pacedChunkDelay between chunks): straight to it, and through the
// gateway with guardrails off and on. With output guardrails the gateway holds the
// last word of what it has until the next delta shows it ended, so the first word
// waits for the second: the hold-back window, which is what the guardrails may add.
func ttftPhase(ctx context.Context, st *stack, n int) ([]ttftResult, error) {
	targets := []struct {
		t     target
		model string
	}{
		{target{Name: targetDirect, URL: st.pacedURL, Auth: st.upstreamAuth, Client: st.direct.Client}, benchModel},
		{st.gateway, pacedModel},
		{st.limited, pacedModel},
		{st.guarded, pacedModel},
	}
	if st.nginx != nil { // after direct: nginx passes the model on to the paced mock
		n := *st.nginx
		n.URL = st.nginxPacedURL
		targets = slices.Insert(targets, 1, struct {
			t     target
			model string
		}{n, benchModel})
	}
	var out []ttftResult
	for _, x := range targets {
		body := []byte(`{"model":"` + x.model + `","messages":[{"role":"user","content":"` + prompt + `"}],"max_tokens":64,"stream":true}`)
		for range 10 { // warm up
			if _, _, err := firstToken(ctx, x.t, body); err != nil {
				return nil, fmt.Errorf("time to first token, %s: %w", x.t.Name, err)
			}
		}
		r := ttftResult{Target: x.t.Name}
		var first, whole []time.Duration
		for range n {
			f, w, err := firstToken(ctx, x.t, body)
			if err != nil {
				return nil, fmt.Errorf("time to first token, %s: %w", x.t.Name, err)
			}
			first, whole = append(first, f), append(whole, w)
		}
		slices.Sort(first)
		slices.Sort(whole)
		r.Requests, r.P50, r.P99, r.WholeP50 = n, percentile(first, 0.5), percentile(first, 0.99), percentile(whole, 0.5)
		out = append(out, r)
	}
	return out, nil
}

// firstToken sends one streamed request and returns the time to the first event
// with content text, and to the [DONE] that must end the stream.
func firstToken(ctx context.Context, t target, body []byte) (first, whole time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", t.Auth)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := t.Client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, 0, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	r := bufio.NewReader(resp.Body)
	var last string
	for {
		line, err := r.ReadString('\n')
		if first == 0 && strings.HasPrefix(line, "data: ") && hasContent(line) {
			first = time.Since(start)
		}
		if s := strings.TrimSpace(line); s != "" {
			last = s
			if s == "data: [DONE]" && whole == 0 {
				whole = time.Since(start) // what a client waits for; the body ends after the audit's fsync
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, 0, err
		}
	}
	if first == 0 || last != "data: [DONE]" {
		return 0, 0, fmt.Errorf("the stream had no content or did not end in [DONE] (last %.80q)", last)
	}
	return first, whole, nil
}

// hasContent reports whether an SSE data line carries content text: a
// "content":"…" that is not empty.
func hasContent(line string) bool {
	i := strings.Index(line, `"content":"`)
	return i >= 0 && i+len(`"content":"`) < len(line) && line[i+len(`"content":"`)] != '"'
}

// guardrailQuality is the detectors' speed, measured in this process, and their
// scores on the generated evaluation set and the hand-written cases.
type guardrailQuality struct {
	Speed guardrails.Speed
	Eval  guardrails.Report
	Cases []guardrails.Report // of guardrails.CasesFiles
}

func measureGuardrails(root string) (guardrailQuality, error) {
	s, err := guardrails.MeasureSpeed(20000)
	if err != nil {
		return guardrailQuality{}, err
	}
	items, err := guardrails.ReadItems(root + "/tests/guardrails/testdata/eval.jsonl.gz")
	if err != nil {
		return guardrailQuality{}, err
	}
	q := guardrailQuality{Speed: s, Eval: guardrails.Evaluate(items)}
	for _, f := range guardrails.CasesFiles {
		cases, err := guardrails.ReadCases(root+"/tests/guardrails/"+f, guardrails.CasesSeed)
		if err != nil {
			return guardrailQuality{}, err
		}
		q.Cases = append(q.Cases, guardrails.Evaluate(cases))
	}
	return q, nil
}
