package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// secrets runs "portcullis secrets <verb>": rotate or revoke provider keys, and show
// their status, history and fetches (POST/GET /admin/v1/secrets/...).
func (cmd *command) secrets(ctx context.Context, verb string, args []string) error {
	switch verb {
	case "rotate", "revoke":
		synopsis := "secrets rotate --provider NAME [--deployment NAME] [--reason TEXT]"
		if verb == "revoke" {
			synopsis = `secrets revoke --provider NAME --reason "TEXT"`
		}
		fs := cmd.newFlags("secrets "+verb, synopsis)
		provider := fs.String("provider", "", "provider whose keys to "+verb+" (required)")
		deployment := new(string)
		if verb == "rotate" {
			deployment = fs.String("deployment", "", "only this deployment of the provider")
		}
		reason := fs.String("reason", "", "why; recorded in the rotation history (required for revoke)")
		if _, err := cmd.parse(fs, args, 0); err != nil {
			return err
		}
		var problems []string
		if *provider == "" {
			problems = append(problems, "--provider is required")
		}
		if verb == "revoke" && strings.TrimSpace(*reason) == "" {
			problems = append(problems, "--reason is required")
		}
		if len(problems) > 0 {
			fs.Usage()
			return fmt.Errorf("%w: %s", ErrUsage, strings.Join(problems, "; "))
		}
		body := map[string]string{"provider": *provider, "reason": *reason}
		if *deployment != "" {
			body["deployment"] = *deployment
		}
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		return cmd.show(ctx, http.MethodPost, "/secrets/"+verb, data, nil)
	case "status":
		fs := cmd.newFlags("secrets status", "secrets status")
		if _, err := cmd.parse(fs, args, 0); err != nil {
			return err
		}
		return cmd.show(ctx, http.MethodGet, "/secrets/status", nil, nil)
	case "history", "access":
		fs := cmd.newFlags("secrets "+verb, "secrets "+verb+" [--deployment NAME] [--limit N]")
		deployment := fs.String("deployment", "", "only this deployment")
		limit := fs.Int("limit", 50, "at most this many, newest first")
		if _, err := cmd.parse(fs, args, 0); err != nil {
			return err
		}
		q := url.Values{"limit": {strconv.Itoa(*limit)}}
		if *deployment != "" {
			q.Set("deployment", *deployment)
		}
		return cmd.show(ctx, http.MethodGet, "/secrets/"+verb+"?"+q.Encode(), nil, nil)
	}
	fmt.Fprintf(cmd.io.Stderr, "portcullis: secrets has no verb %q (rotate, revoke, status, history, access)\n", verb)
	return ErrUsage
}
