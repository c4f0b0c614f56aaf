package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// guardrails runs "portcullis guardrails scan": the guardrails' dry run on a text,
// or on each {"text"} line of a JSON-lines file, under a tier's policy (or every
// family flagged).
func (cmd *command) guardrails(ctx context.Context, verb string, args []string) error {
	if verb != "scan" {
		fmt.Fprintf(cmd.io.Stderr, "portcullis: guardrails has no verb %q (scan)\n", verb)
		return ErrUsage
	}
	fs := cmd.newFlags("guardrails scan", "guardrails scan (-f FILE | --text TEXT) [--tier T] [--direction input|output]")
	file := fs.String("f", "", `a JSON-lines file of {"text": …} objects ("-" reads stdin): one result a line`)
	text := fs.String("text", "", "the text to scan")
	tier := fs.String("tier", "", "scan under this tier's guardrail policy (default: every family flagged)")
	direction := fs.String("direction", "input", "input or output")
	if _, err := cmd.parse(fs, args, 0); err != nil {
		return err
	}
	if (*file == "") == (*text == "") {
		fs.Usage()
		return fmt.Errorf("%w: give -f FILE or --text TEXT", ErrUsage)
	}
	c, err := cmd.client()
	if err != nil {
		return err
	}
	scan := func(t string) (json.RawMessage, error) {
		body, _ := json.Marshal(map[string]string{"text": t, "tier": *tier, "direction": *direction})
		resp, err := c.call(ctx, http.MethodPost, "/guardrails/scan", body, nil)
		if err != nil {
			return nil, err
		}
		return resp.body, nil
	}
	if *text != "" {
		out, err := scan(*text)
		if err != nil {
			return err
		}
		return cmd.printRaw(out)
	}
	var r io.Reader = cmd.io.Stdin
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var item struct {
			ID   json.RawMessage `json:"id"`
			Text *string         `json:"text"`
		}
		if err := json.Unmarshal(sc.Bytes(), &item); err != nil || item.Text == nil {
			return fmt.Errorf("%s:%d: not a JSON object with a \"text\"", *file, n)
		}
		out, err := scan(*item.Text)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", *file, n, err)
		}
		var res struct {
			Findings json.RawMessage `json:"findings"`
			Blocked  bool            `json:"blocked"`
		}
		if err := json.Unmarshal(out, &res); err != nil {
			return fmt.Errorf("%s:%d: unexpected answer", *file, n)
		}
		line := map[string]any{"line": n, "findings": res.Findings, "blocked": res.Blocked}
		if len(item.ID) > 0 {
			line["id"] = item.ID
		}
		b, _ := json.Marshal(line) // raw JSON and numbers always marshal
		if _, err := fmt.Fprintf(cmd.io.Stdout, "%s\n", b); err != nil {
			return err
		}
	}
	return sc.Err()
}
