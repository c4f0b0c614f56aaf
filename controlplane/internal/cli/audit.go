package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/export"
	"github.com/portcullis-gw/portcullis/shared/signing"
)

// audit runs "portcullis audit <verb>": export a region's archive (GET
// /admin/v1/audit/export), verify an export offline, fetch the public key that
// verifies its signed checkpoint (GET /admin/v1/audit/signing-key), and list a
// region's signed chain checkpoints (GET /admin/v1/audit/checkpoints).
func (cmd *command) audit(ctx context.Context, verb string, args []string) error {
	switch verb {
	case "export":
		return cmd.auditExport(ctx, args)
	case "verify":
		fs := cmd.newFlags("audit verify", "audit verify [--pubkey FILE]... <file>   (\"-\" reads stdin)")
		var pubkeys pathList
		fs.Var(&pubkeys, "pubkey", "PEM file of the control plane's audit public key(s), e.g. <data-dir>/audit-signing-key.pub; "+
			"repeatable. The export's signed checkpoint must then verify with one of them")
		pos, err := cmd.parse(fs, args, 1)
		if err != nil {
			return err
		}
		return cmd.auditVerify(pos[0], pubkeys)
	case "signing-key":
		fs := cmd.newFlags("audit signing-key", "audit signing-key [-o FILE]")
		out := fs.String("o", "", "write the PEM public key to this file (default stdout)")
		if _, err := cmd.parse(fs, args, 0); err != nil {
			return err
		}
		return cmd.auditSigningKey(ctx, *out)
	case "checkpoints":
		fs := cmd.newFlags("audit checkpoints", "audit checkpoints --region R [--limit N]")
		region := fs.String("region", "", "region whose signed chain checkpoints to list, newest first (required)")
		limit := fs.Int("limit", 0, "at most this many (default 100, at most 1000)")
		if _, err := cmd.parse(fs, args, 0); err != nil {
			return err
		}
		if *region == "" {
			fs.Usage()
			return fmt.Errorf("%w: --region required", ErrUsage)
		}
		q := url.Values{"region": {*region}}
		if *limit != 0 {
			q.Set("limit", strconv.Itoa(*limit))
		}
		return cmd.show(ctx, http.MethodGet, "/audit/checkpoints?"+q.Encode(), nil, nil)
	}
	fmt.Fprintf(cmd.io.Stderr, "portcullis: audit has no verb %q (export, verify, signing-key, checkpoints)\n", verb)
	return ErrUsage
}

// pathList is a repeatable flag of file paths.
type pathList []string

func (p *pathList) String() string { return strings.Join(*p, ",") }

func (p *pathList) Set(v string) error {
	if v == "" {
		return errors.New("empty path")
	}
	*p = append(*p, v)
	return nil
}

// auditSigningKey fetches the public key of the audit checkpoints and writes it to
// out (stdout when empty or "-").
func (cmd *command) auditSigningKey(ctx context.Context, out string) error {
	c, err := cmd.client()
	if err != nil {
		return err
	}
	resp, err := c.call(ctx, http.MethodGet, "/audit/signing-key", nil, nil)
	if err != nil {
		return err
	}
	keys, err := signing.ParsePublicKeys(resp.body)
	if err != nil {
		return fmt.Errorf("GET /audit/signing-key: not a PEM public key: %w", err)
	}
	if out == "" || out == "-" {
		_, err := cmd.io.Stdout.Write(resp.body)
		return err
	}
	if err := os.WriteFile(out, resp.body, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	fmt.Fprintf(cmd.io.Stderr, "wrote the audit signing public key %s to %s\n", strings.Join(keys.KeyIDs(), ", "), out)
	return nil
}

func (cmd *command) auditExport(ctx context.Context, args []string) error {
	fs := cmd.newFlags("audit export",
		"audit export --region R --from RFC3339 --to RFC3339 [--client ID] [--format ndjson|csv] [-o FILE]")
	region := fs.String("region", "", "region whose archive to export (required)")
	from := fs.String("from", "", "start of the range, inclusive, RFC 3339 (required)")
	to := fs.String("to", "", "end of the range, exclusive, RFC 3339 (required)")
	client := fs.String("client", "", "only this client's events")
	format := fs.String("format", string(export.NDJSON), "ndjson or csv")
	out := fs.String("o", "", "write to this file (default stdout)")
	if _, err := cmd.parse(fs, args, 0); err != nil {
		return err
	}
	var missing []string
	for _, f := range []struct{ name, value string }{{"--region", *region}, {"--from", *from}, {"--to", *to}} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		fs.Usage()
		return fmt.Errorf("%w: %s required", ErrUsage, strings.Join(missing, ", "))
	}
	q := url.Values{"region": {*region}, "from": {*from}, "to": {*to}, "format": {*format}}
	if *client != "" {
		q.Set("client", *client)
	}
	c, err := cmd.client()
	if err != nil {
		return err
	}
	if *out == "" || *out == "-" {
		_, err := c.download(ctx, "/audit/export?"+q.Encode(), cmd.io.Stdout)
		return err
	}
	// Write next to the target and rename once complete, so a failed export leaves
	// no file that looks whole.
	f, err := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".partial-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", *out, err)
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	rows, err := c.download(ctx, "/audit/export?"+q.Encode(), f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write %s: %w", *out, cerr)
	}
	if err != nil {
		return err
	}
	if err := os.Rename(f.Name(), *out); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	fmt.Fprintf(cmd.io.Stderr, "exported %d events of region %s to %s\n", rows, *region, *out)
	return nil
}

// download streams an export from path to w (no overall timeout: an export can be
// long) and returns how many events it held. It fails unless the export ended with
// its chain head.
func (c *client) download(ctx context.Context, path string, w io.Writer) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+adminPrefix+path, nil)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	hc := &http.Client{Transport: c.http.Transport, CheckRedirect: c.http.CheckRedirect}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", req.URL.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return 0, apiError(resp.StatusCode, data)
	}
	tail := &lastLine{}
	if _, err := io.Copy(io.MultiWriter(w, tail), resp.Body); err != nil {
		return 0, fmt.Errorf("export cut short: %w", err)
	}
	head, err := export.ParseHead(tail.line())
	if err != nil {
		return 0, fmt.Errorf("export cut short: its last line is %w", err)
	}
	return head.Rows, nil
}

// lastLine is a writer that keeps the last line written (up to 64 KiB of it).
type lastLine struct {
	cur  []byte // the line being written
	prev []byte // the last complete line
}

func (l *lastLine) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			l.cur = appendCapped(l.cur, rest)
			break
		}
		l.cur = appendCapped(l.cur, rest[:i])
		l.prev, l.cur = l.cur, l.prev[:0]
		rest = rest[i+1:]
	}
	return len(p), nil
}

func (l *lastLine) line() []byte {
	if len(l.cur) > 0 {
		return l.cur
	}
	return l.prev
}

func appendCapped(b, p []byte) []byte {
	const limit = 64 << 10
	if room := limit - len(b); len(p) > room {
		p = p[:max(room, 0)]
	}
	return append(b, p...)
}

// auditVerify checks an export file offline and prints what it proves. With
// pubkeys, the export's signed checkpoint must verify with one of their keys.
func (cmd *command) auditVerify(path string, pubkeys []string) error {
	var opts []export.VerifyOption
	if len(pubkeys) > 0 {
		keys, err := signing.LoadPublicKeys(pubkeys...)
		if err != nil {
			return fmt.Errorf("--pubkey: %w", err)
		}
		opts = append(opts, export.WithPublicKeys(keys))
	}
	var r io.ReadSeeker
	name := path
	if path == "-" {
		data, err := io.ReadAll(cmd.io.Stdin)
		if err != nil {
			return fmt.Errorf("read stdin: %w", err)
		}
		r, name = bytes.NewReader(data), "stdin"
	} else {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	sum, err := export.Verify(r, opts...)
	if ve, ok := errors.AsType[*export.Error](err); ok {
		return fmt.Errorf("%s: verification failed at %w", name, ve)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	h := sum.Head
	scope := "every client"
	if h.Client != nil {
		scope = "client " + *h.Client
	}
	fmt.Fprintf(cmd.io.Stdout, "OK: %s, %s export of region %s, %s, from %s to %s, taken %s\n",
		name, sum.Format, h.Region, scope, h.From.Format("2006-01-02T15:04:05Z07:00"),
		h.To.Format("2006-01-02T15:04:05Z07:00"), h.ExportedAt.Format("2006-01-02T15:04:05Z07:00"))
	switch {
	case h.Rows == 0:
		fmt.Fprintln(cmd.io.Stdout, "events: none")
	case sum.Linked:
		fmt.Fprintf(cmd.io.Stdout, "events: %d, seq %d to %d, an unbroken piece of the chain (each line's hash checked and linked to the previous line)\n",
			h.Rows, h.FirstSeq, h.LastSeq)
	default:
		fmt.Fprintf(cmd.io.Stdout, "events: %d, seq %d to %d, each line's hash checked (a client's events are not consecutive in the chain)\n",
			h.Rows, h.FirstSeq, h.LastSeq)
	}
	if sum.OutsideRange > 0 {
		fmt.Fprintf(cmd.io.Stdout, "late events: %d with a ts outside the range, archived between events of the range\n", sum.OutsideRange)
	}
	reach := "the export ends before the head"
	if sum.ReachesHead {
		reach = "the last event is the head"
	}
	fmt.Fprintf(cmd.io.Stdout, "chain head at export: seq %d, hash %s (%s)\n", h.Seq, h.Hash, reach)
	switch cp := sum.Checkpoint; {
	case sum.SignatureChecked:
		fmt.Fprintf(cmd.io.Stdout, "checkpoint: signature verified, key %s, signed %s: the rows, the range and the chain head are as the control plane exported them\n",
			cp.KeyID, cp.At.Format(time.RFC3339Nano))
	case cp != nil:
		fmt.Fprintf(cmd.io.Stdout, "checkpoint: NOT CHECKED: the file carries one (key %s) but without --pubkey its signature was not verified, "+
			"and a rewritten file with recomputed hashes would pass; run again with --pubkey <the control plane's audit-signing-key.pub>\n", cp.KeyID)
	default:
		fmt.Fprintln(cmd.io.Stdout, "checkpoint: none (the export was not signed): to prove the file unaltered, compare a chain hash above with the archive's (note the head hash somewhere safe)")
	}
	return nil
}
