package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// ErrChanges is diff's answer when the file would change the configuration: the
// process exits 2, for CI.
var ErrChanges = errors.New("the file would change the configuration")

// maxConfigFile bounds a gateway.yaml read (the control plane refuses more).
const maxConfigFile = 1 << 20

// configPlan is the admin API's answer to a configuration apply.
type configPlan struct {
	Version int64 `json:"version"`
	Applied bool  `json:"applied"`
	Changes []struct {
		Action   string `json:"action"`
		Resource string `json:"resource"`
		Key      string `json:"key"`
		Fields   []struct {
			Field  string          `json:"field"`
			Before json.RawMessage `json:"before"`
			After  json.RawMessage `json:"after"`
		} `json:"fields"`
	} `json:"changes"`
	Unmanaged int `json:"unmanaged"`
}

// apply runs `portcullis apply -f FILE [--dry-run] [--prune] [--force]`: the plan,
// then (unless a dry run) the plan applied, refused if the configuration changed
// in between unless --force.
func (cmd *command) apply(ctx context.Context, args []string) error {
	fs := cmd.newFlags("apply", "apply -f FILE [--dry-run] [--prune] [--force]")
	file := fs.String("f", "", `the gateway.yaml ("-" for stdin)`)
	dryRun := fs.Bool("dry-run", false, "show the plan only")
	prune := fs.Bool("prune", false, "delete what the file does not hold")
	force := fs.Bool("force", false, "apply even if the configuration changed since the plan")
	name, data, plan, err := cmd.showPlan(ctx, fs, args, file, prune)
	if err != nil {
		return err
	}
	if *dryRun || len(plan.Changes) == 0 {
		return nil
	}
	match := strconv.Quote(strconv.FormatInt(plan.Version, 10))
	if *force {
		match = ""
	}
	done, err := cmd.planConfig(ctx, name, data, false, *prune, match)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.io.Stdout, "applied: policy version %d\n", done.Version)
	return nil
}

// diff runs `portcullis diff -f FILE [--prune]`: the plan only; ErrChanges when it
// holds changes.
func (cmd *command) diff(ctx context.Context, args []string) error {
	fs := cmd.newFlags("diff", "diff -f FILE [--prune]      exit status 0: no changes, 2: changes")
	file := fs.String("f", "", `the gateway.yaml ("-" for stdin)`)
	prune := fs.Bool("prune", false, "count what the file does not hold as deletions")
	_, _, plan, err := cmd.showPlan(ctx, fs, args, file, prune)
	if err != nil {
		return err
	}
	if len(plan.Changes) > 0 {
		return ErrChanges
	}
	return nil
}

// showPlan parses apply's or diff's flags (into file and prune, among fs's), reads
// the file they name, and prints the control plane's plan of it; it returns the
// file's name and bytes, to apply after.
func (cmd *command) showPlan(ctx context.Context, fs *flag.FlagSet, args []string, file *string, prune *bool) (string, []byte, configPlan, error) {
	if _, err := cmd.parse(fs, args, 0); err != nil {
		return "", nil, configPlan{}, err
	}
	name, data, err := cmd.readConfig(*file)
	if err != nil {
		return "", nil, configPlan{}, err
	}
	plan, err := cmd.planConfig(ctx, name, data, true, *prune, "")
	if err != nil {
		return "", nil, configPlan{}, err
	}
	cmd.printPlan(plan)
	return name, data, plan, nil
}

// export runs `portcullis export [--format yaml|json] [-o FILE]`.
func (cmd *command) export(ctx context.Context, args []string) error {
	fs := cmd.newFlags("export", "export [--format yaml|json] [-o FILE]")
	format := fs.String("format", "yaml", "yaml or json")
	out := fs.String("o", "", "write to FILE instead of stdout")
	if _, err := cmd.parse(fs, args, 0); err != nil {
		return err
	}
	if *format != "yaml" && *format != "json" {
		return fmt.Errorf("%w: --format must be yaml or json", ErrUsage)
	}
	c, err := cmd.client()
	if err != nil {
		return err
	}
	resp, err := c.call(ctx, http.MethodGet, "/config?format="+url.QueryEscape(*format), nil, nil)
	if err != nil {
		return err
	}
	if *out != "" {
		return os.WriteFile(*out, resp.body, 0o644)
	}
	_, err = cmd.io.Stdout.Write(resp.body)
	return err
}

// readConfig reads the file named by -f, or stdin for "-".
func (cmd *command) readConfig(file string) (string, []byte, error) {
	var r io.Reader
	switch file {
	case "":
		return "", nil, fmt.Errorf("%w: name the configuration with -f FILE (\"-\" for stdin)", ErrUsage)
	case "-":
		r, file = cmd.io.Stdin, "stdin"
	default:
		f, err := os.Open(file)
		if err != nil {
			return "", nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxConfigFile+1))
	if err != nil {
		return "", nil, fmt.Errorf("read %s: %w", file, err)
	}
	if len(data) > maxConfigFile {
		return "", nil, fmt.Errorf("%s is larger than %d bytes", file, maxConfigFile)
	}
	return file, data, nil
}

// problemAt is the "line:column: " the API puts before a problem's message.
var problemAt = regexp.MustCompile(`^(\d+):(\d+): `)

// planConfig posts the file to the config apply endpoint. A file with problems
// comes back as an error listing each as FILE:LINE:COLUMN: path: message.
func (cmd *command) planConfig(ctx context.Context, name string, data []byte, dryRun, prune bool, match string) (configPlan, error) {
	c, err := cmd.client()
	if err != nil {
		return configPlan{}, err
	}
	q := url.Values{}
	if dryRun {
		q.Set("dry_run", "true")
	}
	if prune {
		q.Set("prune", "true")
	}
	header := map[string]string{"Content-Type": "application/yaml"}
	if match != "" {
		header["If-Match"] = match
	}
	path := "/config:apply"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	resp, err := c.call(ctx, http.MethodPost, path, data, header)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusUnprocessableEntity && len(apiErr.Fields) > 0 {
		lines := []string{apiErr.Message}
		for _, f := range apiErr.Fields {
			msg := f.Message
			where := name
			if m := problemAt.FindStringSubmatch(msg); m != nil {
				where += ":" + m[1] + ":" + m[2]
				msg = msg[len(m[0]):]
			}
			lines = append(lines, fmt.Sprintf("%s: %s: %s", where, f.Field, msg))
		}
		return configPlan{}, errors.New(strings.Join(lines, "\n"))
	}
	if err != nil {
		return configPlan{}, err
	}
	var plan configPlan
	if err := json.Unmarshal(resp.body, &plan); err != nil {
		return configPlan{}, fmt.Errorf("read the plan: %w", err)
	}
	return plan, nil
}

// printPlan writes a plan: one line per change, an update's fields beneath.
func (cmd *command) printPlan(p configPlan) {
	w := cmd.io.Stdout
	if len(p.Changes) == 0 {
		fmt.Fprintf(w, "no changes (policy version %d)\n", p.Version)
	}
	for _, ch := range p.Changes {
		sign := map[string]string{"create": "+", "update": "~", "delete": "-"}[ch.Action]
		fmt.Fprintf(w, "%s %s %s %s\n", sign, ch.Action, strings.TrimSuffix(ch.Resource, "s"), ch.Key)
		for _, f := range ch.Fields {
			fmt.Fprintf(w, "    %s: %s → %s\n", f.Field, orNone(f.Before), orNone(f.After))
		}
	}
	if p.Unmanaged > 0 {
		fmt.Fprintf(w, "(%d live entities are not in the file; --prune would delete them)\n", p.Unmanaged)
	}
}

func orNone(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return "none"
	}
	return string(raw)
}
