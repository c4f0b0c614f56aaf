package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// alerts runs "portcullis alerts <verb>": list the anomaly alerts or acknowledge one.
func (cmd *command) alerts(ctx context.Context, verb string, args []string) error {
	switch verb {
	case "list":
		fs := cmd.newFlags("alerts list", "alerts list [--unacknowledged] [--limit N]")
		open := fs.Bool("unacknowledged", false, "only the alerts nobody acknowledged")
		limit := fs.Int("limit", 100, "most alerts to list, newest first (1-1000)")
		if _, err := cmd.parse(fs, args, 0); err != nil {
			return err
		}
		q := url.Values{"limit": {strconv.Itoa(*limit)}}
		if *open {
			q.Set("acknowledged", "false")
		}
		return cmd.show(ctx, http.MethodGet, "/alerts?"+q.Encode(), nil, nil)
	case "ack":
		fs := cmd.newFlags("alerts ack", "alerts ack <id>")
		pos, err := cmd.parse(fs, args, 1)
		if err != nil {
			return err
		}
		return cmd.show(ctx, http.MethodPost, "/alerts/"+url.PathEscape(pos[0])+"/ack", nil, nil)
	}
	fmt.Fprintf(cmd.io.Stderr, "portcullis: alerts has no verb %q (list, ack)\n", verb)
	return ErrUsage
}
