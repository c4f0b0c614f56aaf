package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/changelog"
)

// roleFlags collects repeated --role flags: "admin" or "tenant_admin:acme".
type roleFlags []map[string]string

func (r *roleFlags) String() string { return "" }

func (r *roleFlags) Set(s string) error {
	role, tenant, _ := strings.Cut(s, ":")
	b := map[string]string{"role": role}
	if tenant != "" {
		b["tenant"] = tenant
	}
	*r = append(*r, b)
	return nil
}

// principals runs "portcullis principals <verb>".
func (cmd *command) principals(ctx context.Context, verb string, args []string) error {
	switch verb {
	case "list":
		fs := cmd.newFlags("principals list", "principals list")
		if _, err := cmd.parse(fs, args, 0); err != nil {
			return err
		}
		return cmd.show(ctx, http.MethodGet, "/principals", nil, nil)
	case "get", "delete":
		fs := cmd.newFlags("principals "+verb, "principals "+verb+" <name>")
		pos, err := cmd.parse(fs, args, 1)
		if err != nil {
			return err
		}
		method := map[string]string{"get": http.MethodGet, "delete": http.MethodDelete}[verb]
		return cmd.show(ctx, method, itemPath("principals", pos[0]), nil, nil)
	case "create":
		fs := cmd.newFlags("principals create",
			"principals create <name> [--kind service|person] [--display-name TEXT] [--email ADDR] [--role ROLE[:TENANT]]...")
		kind := fs.String("kind", "service", "service (API tokens) or person (signs in with OIDC)")
		display := fs.String("display-name", "", "a name for people to read")
		email := fs.String("email", "", "the principal's email address")
		var roles roleFlags
		fs.Var(&roles, "role", "a role binding: admin, operator, key_custodian, auditor or tenant_admin:<tenant> (repeatable)")
		pos, err := cmd.parse(fs, args, 1)
		if err != nil {
			return err
		}
		body, _ := json.Marshal(map[string]any{"name": pos[0], "kind": *kind, "display_name": *display, "email": *email,
			"roles": append(roleFlags{}, roles...)})
		return cmd.show(ctx, http.MethodPost, "/principals", body, nil)
	case "disable", "enable":
		fs := cmd.newFlags("principals "+verb, "principals "+verb+" <name>")
		pos, err := cmd.parse(fs, args, 1)
		if err != nil {
			return err
		}
		body, _ := json.Marshal(map[string]bool{"disabled": verb == "disable"})
		return cmd.show(ctx, http.MethodPatch, itemPath("principals", pos[0]), body, nil)
	case "roles":
		fs := cmd.newFlags("principals roles", "principals roles <name> [ROLE[:TENANT]]...   (none clears them)")
		pos, err := parseInterleaved(fs, args)
		if err != nil || len(pos) < 1 {
			fs.Usage()
			return ErrUsage
		}
		var roles roleFlags
		for _, r := range pos[1:] {
			_ = roles.Set(r)
		}
		body, _ := json.Marshal(map[string]any{"roles": append(roleFlags{}, roles...)})
		return cmd.show(ctx, http.MethodPut, itemPath("principals", pos[0])+"/roles", body, nil)
	}
	fmt.Fprintf(cmd.io.Stderr, "portcullis: principals has no verb %q (list, get, create, delete, disable, enable, roles)\n", verb)
	return ErrUsage
}

// apiTokens runs "portcullis api-tokens <verb>": admin API tokens, one's own or,
// with --principal, a service account's.
func (cmd *command) apiTokens(ctx context.Context, verb string, args []string) error {
	fs := cmd.newFlags("api-tokens "+verb, map[string]string{
		"create": "api-tokens create --name TEXT [--expires 720h] [--role ROLE] [--principal NAME]   prints the token once",
		"list":   "api-tokens list [--principal NAME]",
		"revoke": "api-tokens revoke <id> [--principal NAME]",
	}[verb])
	principal := fs.String("principal", "", "the principal whose tokens these are (default: the caller's own)")
	base := "/me/tokens"
	switch verb {
	case "create":
		name := fs.String("name", "", "what the token is for (required)")
		expires := fs.Duration("expires", 30*24*time.Hour, "how long the token lives (at most the control plane's admin-token-max-ttl)")
		role := fs.String("role", "", "narrow the token to this one of the principal's roles")
		if _, err := cmd.parse(fs, args, 0); err != nil {
			return err
		}
		if *principal != "" {
			base = itemPath("principals", *principal) + "/tokens"
		}
		body, _ := json.Marshal(map[string]any{"name": *name, "role": *role, "expires_in_seconds": int64(expires.Seconds())})
		c, err := cmd.client()
		if err != nil {
			return err
		}
		resp, err := c.call(ctx, http.MethodPost, base, body, nil)
		if err != nil {
			return err
		}
		var t struct {
			ID, Principal, Token string
			ExpiresAt            time.Time `json:"expires_at"`
		}
		if err := json.Unmarshal(resp.body, &t); err != nil || t.Token == "" {
			return fmt.Errorf("create API token: unexpected response")
		}
		fmt.Fprintf(cmd.io.Stderr, "API token %s of %s, expires %s; it is shown only now:\n", t.ID, t.Principal, t.ExpiresAt.Format(time.RFC3339))
		_, err = fmt.Fprintln(cmd.io.Stdout, t.Token)
		return err
	case "list":
		if _, err := cmd.parse(fs, args, 0); err != nil {
			return err
		}
		if *principal != "" {
			base = itemPath("principals", *principal) + "/tokens"
		}
		return cmd.show(ctx, http.MethodGet, base, nil, nil)
	case "revoke":
		pos, err := cmd.parse(fs, args, 1)
		if err != nil {
			return err
		}
		if *principal != "" {
			base = itemPath("principals", *principal) + "/tokens"
		}
		return cmd.show(ctx, http.MethodDelete, base+"/"+url.PathEscape(pos[0]), nil, nil)
	}
	fmt.Fprintf(cmd.io.Stderr, "portcullis: api-tokens has no verb %q (create, list, revoke)\n", verb)
	return ErrUsage
}

// changes runs "portcullis changes <verb>": the admin change history.
func (cmd *command) changes(ctx context.Context, verb string, args []string) error {
	switch verb {
	case "list":
		fs := cmd.newFlags("changes list",
			"changes list [--resource R] [--actor NAME] [--from RFC3339] [--to RFC3339] [--after SEQ] [--limit N]")
		resource := fs.String("resource", "", "only changes of this resource, e.g. clients, deployments, secrets, principals")
		actor := fs.String("actor", "", "only changes by this principal")
		from := fs.String("from", "", "only changes at or after this time")
		to := fs.String("to", "", "only changes before this time")
		after := fs.Int64("after", 0, "only changes after this seq (the next_after of the previous page)")
		limit := fs.Int("limit", 50, "most changes to list, oldest first (1-500)")
		if _, err := cmd.parse(fs, args, 0); err != nil {
			return err
		}
		q := url.Values{"limit": {strconv.Itoa(*limit)}}
		for k, v := range map[string]string{"resource": *resource, "actor": *actor, "from": *from, "to": *to} {
			if v != "" {
				q.Set(k, v)
			}
		}
		if *after > 0 {
			q.Set("after", strconv.FormatInt(*after, 10))
		}
		return cmd.show(ctx, http.MethodGet, "/changes?"+q.Encode(), nil, nil)
	case "export":
		fs := cmd.newFlags("changes export", "changes export [-o FILE]")
		out := fs.String("o", "", "write to this file (default stdout)")
		if _, err := cmd.parse(fs, args, 0); err != nil {
			return err
		}
		return cmd.exportChanges(ctx, *out)
	case "verify":
		fs := cmd.newFlags("changes verify", "changes verify [FILE]   an export (\"-\" reads stdin); without FILE, the control plane's history")
		pos, err := parseInterleaved(fs, args)
		if err != nil || len(pos) > 1 {
			fs.Usage()
			return ErrUsage
		}
		if len(pos) == 1 {
			return cmd.verifyChangesFile(pos[0])
		}
		c, err := cmd.client()
		if err != nil {
			return err
		}
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(c.stream(ctx, "/changes/export", pw)) }()
		defer pr.Close()
		return cmd.verifyChanges(pr, "the control plane's change history")
	}
	fmt.Fprintf(cmd.io.Stderr, "portcullis: changes has no verb %q (list, export, verify)\n", verb)
	return ErrUsage
}

func (cmd *command) exportChanges(ctx context.Context, out string) error {
	c, err := cmd.client()
	if err != nil {
		return err
	}
	if out == "" || out == "-" {
		return c.stream(ctx, "/changes/export", cmd.io.Stdout)
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	err = c.stream(ctx, "/changes/export", f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write %s: %w", out, cerr)
	}
	if err != nil {
		_ = os.Remove(out)
		return err
	}
	fmt.Fprintf(cmd.io.Stderr, "exported the change history to %s\n", out)
	return nil
}

func (cmd *command) verifyChangesFile(path string) error {
	if path == "-" {
		return cmd.verifyChanges(cmd.io.Stdin, "stdin")
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return cmd.verifyChanges(f, path)
}

// verifyChanges checks the hash chain of an export read from r.
func (cmd *command) verifyChanges(r io.Reader, name string) error {
	var v changelog.Verifier
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		var rec changelog.Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return fmt.Errorf("FAILED: %s line %d is not a change record: %v", name, line, err)
		}
		if err := v.Next(rec); err != nil {
			return fmt.Errorf("FAILED: %s line %d: %w", name, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("FAILED: %s: %w", name, err)
	}
	head := v.Head()
	if head == nil {
		_, err := fmt.Fprintf(cmd.io.Stdout, "OK: %s holds no changes\n", name)
		return err
	}
	_, err := fmt.Fprintf(cmd.io.Stdout, "OK: %s, %d changes chained up to seq %d, head hash %s\n", name, v.Count(), head.Seq, head.Hash)
	return err
}

// stream copies the body of GET path to w, failing on a non-200 answer.
func (c *client) stream(ctx context.Context, path string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+adminPrefix+path, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	hc := &http.Client{Transport: c.http.Transport, CheckRedirect: c.http.CheckRedirect}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", req.URL.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return apiError(resp.StatusCode, data)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("GET %s cut short: %w", req.URL.Path, err)
	}
	return nil
}
