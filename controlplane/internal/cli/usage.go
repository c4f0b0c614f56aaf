package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// usage runs "portcullis usage": the showback report of GET /admin/v1/usage, as JSON
// or CSV on stdout.
func (cmd *command) usage(ctx context.Context, args []string) error {
	fs := cmd.newFlags("usage", "usage --group-by client|tenant|model --from RFC3339 --to RFC3339 [--format json|csv]")
	groupBy := fs.String("group-by", "client", "client, tenant or model")
	from := fs.String("from", "", "start of the range, RFC 3339, rounded down to the hour (required)")
	to := fs.String("to", "", "end of the range, RFC 3339, rounded up to the hour (required)")
	format := fs.String("format", "json", "json or csv")
	if _, err := cmd.parse(fs, args, 0); err != nil {
		return err
	}
	var missing []string
	for _, f := range []struct{ name, value string }{{"--from", *from}, {"--to", *to}} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		fs.Usage()
		return fmt.Errorf("%w: %s required", ErrUsage, strings.Join(missing, ", "))
	}
	q := url.Values{"group_by": {*groupBy}, "from": {*from}, "to": {*to}, "format": {*format}}
	c, err := cmd.client()
	if err != nil {
		return err
	}
	resp, err := c.call(ctx, http.MethodGet, "/usage?"+q.Encode(), nil, nil)
	if err != nil {
		return err
	}
	if *format == "csv" {
		_, err = cmd.io.Stdout.Write(resp.body)
		return err
	}
	return cmd.printRaw(resp.body)
}
