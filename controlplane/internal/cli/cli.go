package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"

	"github.com/portcullis-gw/portcullis/shared/config"
	"github.com/portcullis-gw/portcullis/shared/secretfile"
)

// ErrUsage marks a command line that could not be understood; the usage was printed.
var ErrUsage = errors.New("usage error")

// AdminTokenFile is the file, inside the data directory, holding the bootstrap admin token.
const AdminTokenFile = "admin-token"

// IO is where a command reads its input and writes its output.
type IO struct {
	Stdin  io.Reader
	Stdout io.Writer // results only: JSON, or the bare token of "tokens mint"
	Stderr io.Writer // progress and usage
	// OpenURL opens a URL in a browser for `portcullis login`; nil tries xdg-open
	// or open.
	OpenURL func(string) error
}

// Config is the CLI's configuration.
type Config struct {
	AdminURL   string
	AdminToken string
	DataDir    string
	// ConfigDir holds credentials.json, the tokens of `portcullis login`.
	ConfigDir string
}

// Resources lists every admin API collection the generic verbs work on.
var Resources = []string{
	"tenants", "tiers", "clients", "providers", "deployments", "models",
	"residency-rules", "fallback-maps", "revoked-tokens", "anomaly-rules",
}

const usage = `usage: portcullis [--admin-url URL] [--data-dir DIR] <command>

The admin token comes from PORTCULLIS_ADMIN_TOKEN (an API token, or the bootstrap or
break-glass token), else from portcullis login's credentials (in
$PORTCULLIS_CONFIG_DIR, else ~/.config/portcullis), else from <data-dir>/admin-token
(mode 0600); never from the command line, where process listings show it.

commands:
  login [--no-browser]                               sign in with the identity provider; keeps a short-lived token
  logout                                             revoke and forget that token
  tokens mint --client ID [--scope S]... [--ttl 1h] [--audience AUD]   print a dev JWT
  tokens revoke --jti JTI --expires-at RFC3339 [--reason TEXT]
  <resource> list [--limit N]
  <resource> get <key>
  <resource> create (-f FILE | --json '{...}')        FILE "-" reads stdin
  <resource> update <key> (-f FILE | --json '{...}')  JSON merge patch, guarded by If-Match
  <resource> delete <key>
  clients create (-f FILE | --json '{...}') --residency RULE|global   "global": no residency restriction
  clients update <client_id> [-f FILE | --json '{...}'] [--residency RULE|global]
  tiers create|update ... [--max-choices N] [--max-output-tokens N]   0: no tier cap
  residency-rules create|update ... [--endpoint-url URL]             the residency's data-plane URL
  clients disable|enable <client_id>
  overrides set <client_id> [--requests-per-minute N] [--tokens-per-hour N]
      [--max-concurrent-requests N] (--for 15m | --until RFC3339) --reason TEXT
  overrides get|clear <client_id>
  overrides list
  deployments health                                 breaker, error rate and latency per worker
  secrets rotate --provider NAME [--deployment NAME] [--reason TEXT]
  secrets revoke --provider NAME --reason "TEXT"     immediate, no overlap; alerts
  secrets status                                     versions, ages, next rotation, last fetch per worker
  secrets history|access [--deployment NAME] [--limit N]
  audit export --region R --from RFC3339 --to RFC3339 [--client ID] [--format ndjson|csv] [-o FILE]
  audit verify [--pubkey FILE]... FILE               offline check of an export; "-" reads stdin; --pubkey checks its signed checkpoint
  audit signing-key [-o FILE]                        the public key (PEM) that verifies audit checkpoints
  audit checkpoints --region R [--limit N]           the region's signed chain checkpoints, newest first
  usage --group-by client|tenant|model --from RFC3339 --to RFC3339 [--format json|csv]
  alerts list [--unacknowledged] [--limit N]
  alerts ack <id>
  whoami                                             who the token is, its roles and permissions
  principals list | get <name> | delete <name> | disable <name> | enable <name>
  principals create <name> [--kind service|person] [--display-name T] [--email E] [--role ROLE[:TENANT]]...
  principals roles <name> [ROLE[:TENANT]]...         replace the principal's role bindings
  api-tokens create --name TEXT [--expires 720h] [--role ROLE] [--principal NAME]   prints the token once
  api-tokens list [--principal NAME]
  api-tokens revoke <id> [--principal NAME]
  changes [list] [--resource R] [--actor NAME] [--from RFC3339] [--to RFC3339] [--after SEQ] [--limit N]
  changes export [-o FILE]                           the whole change history, JSON lines
  changes verify [FILE]                              check its hash chain (default: fetch it)
  guardrails scan (-f FILE | --text TEXT) [--tier T] [--direction input|output]
                                                     the guardrails' dry run; FILE: {"text"} lines, a result a line
  apply -f FILE [--dry-run] [--prune] [--force]      apply a gateway.yaml: the plan, then one policy version
  diff -f FILE [--prune]                             the plan only; exit status 0: no changes, 2: changes
  export [--format yaml|json] [-o FILE]              the live configuration as a gateway.yaml

resources: ` + "tenants, tiers, clients, providers, deployments, models, residency-rules, fallback-maps, revoked-tokens, anomaly-rules" + `

global flags:
`

// Run executes one CLI command line (without the program name).
func Run(ctx context.Context, args []string, stdio IO, getenv func(string) string) error {
	if err := refuseTokenArg(args); err != nil {
		return err
	}
	cfg := Config{AdminToken: getenv(EnvAdminToken), ConfigDir: configDir(getenv)}
	l := config.NewLoader("portcullis", stdio.Stderr)
	l.String(&cfg.AdminURL, "admin-url", "http://127.0.0.1:8080", "control plane admin API base URL")
	l.String(&cfg.DataDir, "data-dir", ".data", "control plane data directory holding admin-token (the admin token's file, unless "+EnvAdminToken+" is set)")
	l.FlagSet().Usage = func() {
		fmt.Fprint(stdio.Stderr, usage)
		l.FlagSet().PrintDefaults()
	}
	rest, err := l.Parse(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(rest) >= 1 {
		cmd := &command{cfg: cfg, io: stdio}
		switch rest[0] {
		case "whoami":
			return cmd.show(ctx, http.MethodGet, "/whoami", nil, nil)
		case "login":
			return cmd.login(ctx, rest[1:])
		case "logout":
			return cmd.logout(ctx, rest[1:])
		case "apply":
			return cmd.apply(ctx, rest[1:])
		case "diff":
			return cmd.diff(ctx, rest[1:])
		case "export":
			return cmd.export(ctx, rest[1:])
		case "changes":
			if len(rest) == 1 || strings.HasPrefix(rest[1], "-") { // "portcullis changes --actor alice"
				return cmd.changes(ctx, "list", rest[1:])
			}
		}
	}
	if len(rest) < 2 {
		l.FlagSet().Usage()
		return ErrUsage
	}
	cmd := &command{cfg: cfg, io: stdio}
	noun, verb, tail := rest[0], rest[1], rest[2:]
	switch {
	case noun == "tokens" && verb == "mint":
		return cmd.mint(ctx, tail)
	case noun == "tokens" && verb == "revoke":
		return cmd.revoke(ctx, tail)
	case noun == "clients" && (verb == "disable" || verb == "enable"):
		return cmd.setClientEnabled(ctx, verb == "enable", tail)
	case noun == "deployments" && verb == "health":
		fs := cmd.newFlags("deployments health", "deployments health")
		if _, err := cmd.parse(fs, tail, 0); err != nil {
			return err
		}
		return cmd.show(ctx, http.MethodGet, "/deployments/health", nil, nil)
	case noun == "secrets":
		return cmd.secrets(ctx, verb, tail)
	case noun == "overrides":
		return cmd.overrides(ctx, verb, tail)
	case noun == "audit":
		return cmd.audit(ctx, verb, tail)
	case noun == "usage":
		return cmd.usage(ctx, rest[1:])
	case noun == "alerts":
		return cmd.alerts(ctx, verb, tail)
	case noun == "principals":
		return cmd.principals(ctx, verb, tail)
	case noun == "api-tokens":
		return cmd.apiTokens(ctx, verb, tail)
	case noun == "changes":
		return cmd.changes(ctx, verb, tail)
	case noun == "guardrails":
		return cmd.guardrails(ctx, verb, tail)
	case slices.Contains(Resources, noun):
		return cmd.resource(ctx, noun, verb, tail)
	}
	fmt.Fprintf(stdio.Stderr, "portcullis: unknown command %q\n", strings.Join(rest[:2], " "))
	l.FlagSet().Usage()
	return ErrUsage
}

// EnvAdminToken is the environment variable that may hold the admin token.
var EnvAdminToken = config.EnvName("admin-token")

// refuseTokenArg refuses an admin token on the command line: every user of the
// machine can read a process's arguments (ps, /proc/<pid>/cmdline), and shells keep
// them in their history.
func refuseTokenArg(args []string) error {
	for _, a := range args {
		if a == "--" {
			return nil
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "admin-token" {
			return fmt.Errorf("%w: --admin-token is refused: a token on the command line shows in process listings "+
				"and shell history; set %s in the environment, or let the CLI read <data-dir>/admin-token", ErrUsage, EnvAdminToken)
		}
	}
	return nil
}

// command carries one invocation's configuration; the API client is made on first use.
type command struct {
	cfg Config
	io  IO
	c   *client
}

func (cmd *command) client() (*client, error) {
	if cmd.c != nil {
		return cmd.c, nil
	}
	token := strings.TrimSpace(cmd.cfg.AdminToken)
	if token == "" {
		t, err := cmd.loginToken()
		if err != nil {
			return nil, err
		}
		token = t
	}
	if token == "" {
		path := filepath.Join(cmd.cfg.DataDir, AdminTokenFile)
		data, err := secretfile.Read("the admin token file ("+config.EnvName("data-dir")+"/"+AdminTokenFile+")", path, 64<<10)
		if errors.Is(err, secretfile.ErrTooOpen) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("no admin token: run portcullis login, set %s, or run where %s exists (--data-dir): %w",
				EnvAdminToken, path, err)
		}
		token = strings.TrimSpace(string(data))
		if token == "" {
			return nil, fmt.Errorf("no admin token: %s is empty", path)
		}
	}
	c, err := newClient(cmd.cfg.AdminURL, token)
	if err != nil {
		return nil, err
	}
	cmd.c = c
	return c, nil
}

// parseInterleaved parses flags that may appear before, between or after the
// positional arguments, and returns the positional arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// newFlags returns a flag set for one subcommand, printing its usage to stderr.
func (cmd *command) newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(cmd.io.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(cmd.io.Stderr, "usage: portcullis %s\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses a subcommand's arguments and checks the number of positional ones.
func (cmd *command) parse(fs *flag.FlagSet, args []string, positional int) ([]string, error) {
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, ErrUsage
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if len(pos) != positional {
		fs.Usage()
		return nil, ErrUsage
	}
	return pos, nil
}
