package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
)

// maxListPages bounds how many pages "list" follows.
const maxListPages = 10000

func (cmd *command) resource(ctx context.Context, res, verb string, args []string) error {
	switch verb {
	case "list":
		return cmd.list(ctx, res, args)
	case "get":
		fs := cmd.newFlags(res+" get", res+" get <key>")
		pos, err := cmd.parse(fs, args, 1)
		if err != nil {
			return err
		}
		return cmd.show(ctx, http.MethodGet, itemPath(res, pos[0]), nil, nil)
	case "create":
		fs := cmd.newFlags(res+" create", res+" create (-f FILE | --json '{...}')"+fieldSynopsis(res, true))
		body := bodyFlags(fs)
		fields := addFieldFlags(fs, res)
		if _, err := cmd.parse(fs, args, 0); err != nil {
			return err
		}
		data, err := body.read(cmd.io.Stdin)
		if err != nil {
			return err
		}
		if data, err = fields.apply(data, true); err != nil {
			return err
		}
		return cmd.show(ctx, http.MethodPost, "/"+res, data, nil)
	case "update":
		synopsis := res + " update <key> (-f FILE | --json '{...}')"
		if extra := fieldSynopsis(res, false); extra != "" {
			synopsis = res + " update <key> [-f FILE | --json '{...}']" + extra
		}
		fs := cmd.newFlags(res+" update", synopsis)
		body := bodyFlags(fs)
		fields := addFieldFlags(fs, res)
		pos, err := cmd.parse(fs, args, 1)
		if err != nil {
			return err
		}
		var data []byte
		if !fields.given() || body.given() {
			// A field flag alone is a whole patch; otherwise the body is required.
			if data, err = body.read(cmd.io.Stdin); err != nil {
				return err
			}
		}
		if data, err = fields.apply(data, false); err != nil {
			return err
		}
		return cmd.patch(ctx, itemPath(res, pos[0]), data)
	case "delete":
		fs := cmd.newFlags(res+" delete", res+" delete <key>")
		pos, err := cmd.parse(fs, args, 1)
		if err != nil {
			return err
		}
		c, err := cmd.client()
		if err != nil {
			return err
		}
		if _, err := c.call(ctx, http.MethodDelete, itemPath(res, pos[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(cmd.io.Stderr, "deleted %s %s\n", res, pos[0])
		return nil
	}
	fmt.Fprintf(cmd.io.Stderr, "portcullis: %s has no verb %q (list, get, create, update, delete)\n", res, verb)
	return ErrUsage
}

// list prints every item of res, following next_cursor, as one JSON array.
func (cmd *command) list(ctx context.Context, res string, args []string) error {
	fs := cmd.newFlags(res+" list", res+" list [--limit N]")
	limit := fs.Int("limit", 100, "page size (1-500)")
	if _, err := cmd.parse(fs, args, 0); err != nil {
		return err
	}
	return cmd.listAll(ctx, res, *limit)
}

// listAll prints every item of the admin collection at path (relative to /admin/v1,
// without a leading slash), following next_cursor, as one JSON array.
func (cmd *command) listAll(ctx context.Context, res string, limit int) error {
	c, err := cmd.client()
	if err != nil {
		return err
	}
	items := []json.RawMessage{}
	cursor := ""
	for range maxListPages {
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		resp, err := c.call(ctx, http.MethodGet, "/"+res+"?"+q.Encode(), nil, nil)
		if err != nil {
			return err
		}
		var page struct {
			Items      []json.RawMessage `json:"items"`
			NextCursor *string           `json:"next_cursor"`
		}
		if err := json.Unmarshal(resp.body, &page); err != nil {
			return fmt.Errorf("list %s: unexpected response: %w", res, err)
		}
		items = append(items, page.Items...)
		if page.NextCursor == nil || *page.NextCursor == "" || *page.NextCursor == cursor {
			return cmd.printJSON(items)
		}
		cursor = *page.NextCursor
	}
	return fmt.Errorf("list %s: more than %d pages", res, maxListPages)
}

// show makes one call and prints its JSON response.
func (cmd *command) show(ctx context.Context, method, path string, body []byte, header map[string]string) error {
	c, err := cmd.client()
	if err != nil {
		return err
	}
	resp, err := c.call(ctx, method, path, body, header)
	if err != nil {
		return err
	}
	return cmd.printRaw(resp.body)
}

// patch reads the item for its ETag, then sends the merge patch guarded by If-Match,
// so a concurrent change by another admin fails with 412 instead of being overwritten.
func (cmd *command) patch(ctx context.Context, path string, data []byte) error {
	c, err := cmd.client()
	if err != nil {
		return err
	}
	cur, err := c.call(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	etag := cur.header.Get("ETag")
	if etag == "" {
		return fmt.Errorf("GET %s: the response has no ETag", path)
	}
	return cmd.show(ctx, http.MethodPatch, path, data, map[string]string{
		"If-Match":     etag,
		"Content-Type": "application/merge-patch+json",
	})
}

func (cmd *command) setClientEnabled(ctx context.Context, enabled bool, args []string) error {
	verb := map[bool]string{true: "enable", false: "disable"}[enabled]
	fs := cmd.newFlags("clients "+verb, "clients "+verb+" <client_id>")
	pos, err := cmd.parse(fs, args, 1)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]bool{"enabled": enabled})
	return cmd.patch(ctx, itemPath("clients", pos[0]), body)
}

func (cmd *command) printJSON(v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(cmd.io.Stdout, "%s\n", data)
	return err
}

// printRaw pretty-prints a JSON response body (or prints it as is if it is not JSON).
func (cmd *command) printRaw(body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	var out bytes.Buffer
	if json.Indent(&out, body, "", "  ") != nil {
		out.Reset()
		out.Write(body)
	}
	out.WriteByte('\n')
	_, err := cmd.io.Stdout.Write(out.Bytes())
	return err
}

// bodySource is the -f / --json pair of a command that sends a JSON object.
type bodySource struct {
	file, inline *string
}

func bodyFlags(fs *flag.FlagSet) bodySource {
	return bodySource{
		file:   fs.String("f", "", "read the JSON body from FILE (\"-\" for stdin)"),
		inline: fs.String("json", "", "the JSON body"),
	}
}

// given reports whether -f or --json was given.
func (b bodySource) given() bool { return *b.file != "" || *b.inline != "" }

func (b bodySource) read(stdin io.Reader) ([]byte, error) {
	var data []byte
	switch {
	case *b.file != "" && *b.inline != "":
		return nil, fmt.Errorf("%w: give either -f or --json, not both", ErrUsage)
	case *b.inline != "":
		data = []byte(*b.inline)
	case *b.file == "-":
		d, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		data = d
	case *b.file != "":
		d, err := os.ReadFile(*b.file)
		if err != nil {
			return nil, err
		}
		data = d
	default:
		return nil, fmt.Errorf("%w: a JSON body is required (-f FILE or --json '{...}')", ErrUsage)
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("the body is not valid JSON")
	}
	return data, nil
}
