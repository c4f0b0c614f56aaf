package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// overridesList is the admin collection of active limit overrides.
const overridesList = "limit-overrides"

// overrideLimitFlags maps each limit flag of "overrides set" to its JSON field.
var overrideLimitFlags = []struct{ flag, field, usage string }{
	{"requests-per-minute", "requests_per_minute", "requests per minute while the override lasts"},
	{"tokens-per-hour", "tokens_per_hour", "tokens per hour while the override lasts"},
	{"max-concurrent-requests", "max_concurrent_requests", "concurrent requests while the override lasts"},
}

// overridePath is the admin path of one client's limit override.
func overridePath(clientID string) string { return itemPath("clients", clientID) + "/limit-override" }

// overrides runs "portcullis overrides <verb>": set, get, clear or list the
// time-boxed limit overrides of clients.
func (cmd *command) overrides(ctx context.Context, verb string, args []string) error {
	switch verb {
	case "set":
		return cmd.setOverride(ctx, args)
	case "get":
		fs := cmd.newFlags("overrides get", "overrides get <client_id>")
		pos, err := cmd.parse(fs, args, 1)
		if err != nil {
			return err
		}
		return cmd.show(ctx, http.MethodGet, overridePath(pos[0]), nil, nil)
	case "clear":
		fs := cmd.newFlags("overrides clear", "overrides clear <client_id>")
		pos, err := cmd.parse(fs, args, 1)
		if err != nil {
			return err
		}
		c, err := cmd.client()
		if err != nil {
			return err
		}
		if _, err := c.call(ctx, http.MethodDelete, overridePath(pos[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(cmd.io.Stderr, "cleared the limit override of client %s\n", pos[0])
		return nil
	case "list":
		fs := cmd.newFlags("overrides list", "overrides list [--limit N]")
		limit := fs.Int("limit", 100, "page size (1-500)")
		if _, err := cmd.parse(fs, args, 0); err != nil {
			return err
		}
		return cmd.listAll(ctx, overridesList, *limit)
	}
	fmt.Fprintf(cmd.io.Stderr, "portcullis: overrides has no verb %q (set, get, clear, list)\n", verb)
	return ErrUsage
}

// setOverride creates or replaces a client's override. Limits left out keep the tier's
// value; the control plane checks the values, the CLI only that the command is whole.
func (cmd *command) setOverride(ctx context.Context, args []string) error {
	fs := cmd.newFlags("overrides set", "overrides set <client_id> [--requests-per-minute N] [--tokens-per-hour N]\n"+
		"    [--max-concurrent-requests N] (--for 15m | --until RFC3339) --reason TEXT")
	limits := make([]*int64, len(overrideLimitFlags))
	for i, l := range overrideLimitFlags {
		limits[i] = fs.Int64(l.flag, 0, l.usage)
	}
	lasts := fs.Duration("for", 0, "how long the override lasts, in whole seconds, e.g. 15m (at most 720h)")
	until := fs.String("until", "", "when the override ends, RFC 3339, e.g. 2026-04-14T20:00:00Z")
	reason := fs.String("reason", "", "why the limits are overridden (required)")
	pos, err := cmd.parse(fs, args, 1)
	if err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	body := map[string]any{"reason": *reason}
	var problems []string
	for i, l := range overrideLimitFlags {
		if given[l.flag] {
			body[l.field] = *limits[i]
		}
	}
	if len(body) == 1 {
		problems = append(problems, "give at least one of --requests-per-minute, --tokens-per-hour or --max-concurrent-requests")
	}
	switch {
	case given["for"] && given["until"]:
		problems = append(problems, "give either --for or --until, not both")
	case given["for"]:
		if *lasts < time.Second || *lasts%time.Second != 0 {
			problems = append(problems, fmt.Sprintf("--for %v: must be a whole number of seconds, at least 1s", *lasts))
		}
		body["ttl_seconds"] = int64(*lasts / time.Second)
	case given["until"]:
		at, err := time.Parse(time.RFC3339, *until)
		if err != nil {
			problems = append(problems, fmt.Sprintf("--until %q: not RFC 3339 (e.g. 2026-04-14T20:00:00Z)", *until))
		}
		body["expires_at"] = at
	default:
		problems = append(problems, "--for or --until is required")
	}
	if strings.TrimSpace(*reason) == "" {
		problems = append(problems, "--reason is required")
	}
	if len(problems) > 0 {
		fs.Usage()
		return fmt.Errorf("%w: %s", ErrUsage, strings.Join(problems, "; "))
	}
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return cmd.show(ctx, http.MethodPut, overridePath(pos[0]), data, nil)
}
