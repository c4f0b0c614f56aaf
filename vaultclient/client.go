// Package vaultclient is Portcullis's Vault client, shared by the control plane and
// the data planes: it logs in (token, AppRole or Kubernetes), keeps its token alive
// (renewing it, and logging in again before it expires), and reads and writes
// provider keys in KV v2 and dynamic secret engines over github.com/hashicorp/vault/api.
//
// A key is the field "api_key" of its secret. Errors name paths and versions, never a
// key or a token.
//
// It is a module of its own (vaultclient, at the root with its own go.mod): both planes
// import it, neither imports the other, and the shared contract module stays free of
// Vault, which tests/architecture enforces.
package vaultclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
	"github.com/hashicorp/vault/api/auth/kubernetes"

	"github.com/portcullis-gw/portcullis/shared/config"
	"github.com/portcullis-gw/portcullis/shared/secretfile"
)

// Auth methods.
const (
	AuthToken      = "token"
	AuthAppRole    = "approle"
	AuthKubernetes = "kubernetes"
)

// AuthMethods lists every auth method.
var AuthMethods = []string{AuthToken, AuthAppRole, AuthKubernetes}

// DefaultK8sJWTFile is where Kubernetes mounts a pod's service-account token.
const DefaultK8sJWTFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// KeyField is the field of a secret that holds the provider key.
const KeyField = "api_key"

// Config says where Vault is and how to log in.
type Config struct {
	// Addr is Vault's address, e.g. https://vault.internal:8200.
	Addr string
	// CAFile, if set, is the PEM bundle Vault's certificate is verified against.
	CAFile string
	// Auth is one of AuthMethods.
	Auth string
	// Token (token auth) is the token itself; TokenFile a file holding it, re-read
	// when the token nears its end (a Vault agent sink rewrites it). One is required.
	Token     string
	TokenFile string
	// RoleID and SecretIDFile (approle auth); Mount is the auth method's mount path
	// (default "approle" or "kubernetes").
	RoleID       string
	SecretIDFile string
	// K8sRole and K8sJWTFile (kubernetes auth; the file defaults to DefaultK8sJWTFile).
	K8sRole    string
	K8sJWTFile string
	Mount      string
	// Timeout bounds each call to Vault; zero means 10 s.
	Timeout time.Duration
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("vault address is required"))
	}
	switch c.Auth {
	case AuthToken:
		if c.Token == "" && c.TokenFile == "" {
			errs = append(errs, errors.New("vault token auth needs a token or a token file"))
		}
	case AuthAppRole:
		if c.RoleID == "" || c.SecretIDFile == "" {
			errs = append(errs, errors.New("vault approle auth needs a role id and a secret id file"))
		}
	case AuthKubernetes:
		if c.K8sRole == "" {
			errs = append(errs, errors.New("vault kubernetes auth needs a role"))
		}
	default:
		errs = append(errs, fmt.Errorf("vault auth %q: must be one of %s", c.Auth, strings.Join(AuthMethods, ", ")))
	}
	return errors.Join(errs...)
}

// Client is a logged-in Vault client. Safe for concurrent use.
type Client struct {
	cfg Config
	api *api.Client
	log *slog.Logger

	stop chan struct{}
	done chan struct{}
	once sync.Once

	loginMu   sync.Mutex // serializes logins; guards lastLogin
	lastLogin time.Time
}

// New logs in to Vault and starts keeping the token alive until Close.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	ac, err := apiConfig(cfg)
	if err != nil {
		return nil, err
	}
	c, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	// NewClient still reads VAULT_TOKEN and VAULT_NAMESPACE: neither is ours.
	c.ClearNamespace()
	c.ClearToken()
	cl := &Client{cfg: cfg, api: c, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	auth, err := cl.login(ctx)
	if err != nil {
		return nil, err
	}
	cl.lastLogin = time.Now()
	go cl.keepAlive(auth)
	return cl, nil
}

// apiConfig is the Vault API client's configuration, built from cfg alone.
// api.DefaultConfig is not used: it reads the VAULT_* environment (VAULT_ADDR,
// VAULT_SKIP_VERIFY, VAULT_CACERT, VAULT_CAPATH, VAULT_CLIENT_CERT, VAULT_CLIENT_KEY,
// VAULT_TLS_SERVER_NAME, VAULT_AGENT_ADDR, VAULT_HTTP_PROXY, ...), so a variable
// left in a worker's environment could turn certificate verification off or send
// the token elsewhere. Here Vault's certificate is verified against the system's
// roots, or against CAFile when set, and nothing else.
func apiConfig(cfg Config) (*api.Config, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone() // HTTPS_PROXY and NO_PROXY still apply, as to every client
	tr.TLSHandshakeTimeout = 10 * time.Second
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	ac := &api.Config{
		Address: cfg.Addr,
		HttpClient: &http.Client{
			Transport: tr,
			// Vault's client handles the redirects it wants itself (api.DefaultConfig does the same).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Timeout:      cfg.Timeout,
		MaxRetries:   2,
		MinRetryWait: time.Second,
		MaxRetryWait: 1500 * time.Millisecond,
	}
	if err := ac.ConfigureTLS(&api.TLSConfig{CACert: cfg.CAFile}); err != nil {
		return nil, fmt.Errorf("vault CA file %s: %w", cfg.CAFile, err)
	}
	return ac, nil
}

// API is the underlying client, logged in.
func (c *Client) API() *api.Client { return c.api }

// Close stops keeping the token alive.
func (c *Client) Close() {
	c.once.Do(func() { close(c.stop) })
	<-c.done
}

// login authenticates and sets the client's token. It returns the login's auth
// secret (for token auth, one built from a lookup of the token), whose lease the
// keeper renews.
func (c *Client) login(ctx context.Context) (*api.Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	switch c.cfg.Auth {
	case AuthToken:
		token := c.cfg.Token
		if c.cfg.TokenFile != "" {
			raw, err := secretfile.Read(config.EnvName("vault-token-file"), c.cfg.TokenFile, 64<<10)
			if err != nil {
				return nil, fmt.Errorf("vault token file: %w", err)
			}
			token = strings.TrimSpace(string(raw))
		}
		if token == "" {
			return nil, errors.New("vault token is empty")
		}
		c.api.SetToken(token)
		self, err := c.api.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("vault token lookup: %w", err)
		}
		ttl, _ := self.TokenTTL()
		renewable, _ := self.TokenIsRenewable()
		return &api.Secret{Auth: &api.SecretAuth{ClientToken: token, Renewable: renewable,
			LeaseDuration: int(ttl / time.Second)}}, nil
	case AuthAppRole:
		if err := secretfile.Check(config.EnvName("vault-secret-id-file"), c.cfg.SecretIDFile); err != nil {
			return nil, fmt.Errorf("vault approle auth: %w", err)
		}
		opts := []approle.LoginOption{}
		if c.cfg.Mount != "" {
			opts = append(opts, approle.WithMountPath(c.cfg.Mount))
		}
		m, err := approle.NewAppRoleAuth(c.cfg.RoleID, &approle.SecretID{FromFile: c.cfg.SecretIDFile}, opts...)
		if err != nil {
			return nil, fmt.Errorf("vault approle auth: %w", err)
		}
		return c.loginWith(ctx, m, "approle")
	default:
		return c.loginWith(ctx, c.kubernetesAuth(), "kubernetes")
	}
}

// kubernetesAuth is the Kubernetes auth method of the config.
func (c *Client) kubernetesAuth() api.AuthMethod {
	path := c.cfg.K8sJWTFile
	if path == "" {
		path = DefaultK8sJWTFile
	}
	// Read at every login: the kubelet rotates projected service-account tokens.
	raw, err := os.ReadFile(path)
	if err != nil {
		return failedAuth{fmt.Errorf("vault kubernetes auth: service-account token: %w", err)}
	}
	opts := []kubernetes.LoginOption{kubernetes.WithServiceAccountToken(strings.TrimSpace(string(raw)))}
	if c.cfg.Mount != "" {
		opts = append(opts, kubernetes.WithMountPath(c.cfg.Mount))
	}
	m, err := kubernetes.NewKubernetesAuth(c.cfg.K8sRole, opts...)
	if err != nil {
		return failedAuth{fmt.Errorf("vault kubernetes auth: %w", err)}
	}
	return m
}

// failedAuth is an auth method that could not be built; its login returns why.
type failedAuth struct{ err error }

func (f failedAuth) Login(context.Context, *api.Client) (*api.Secret, error) { return nil, f.err }

func (c *Client) loginWith(ctx context.Context, m api.AuthMethod, name string) (*api.Secret, error) {
	s, err := c.api.Auth().Login(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("vault %s login: %w", name, err)
	}
	if s == nil || s.Auth == nil {
		return nil, fmt.Errorf("vault %s login: no token in the answer", name)
	}
	return s, nil
}

// keepAlive renews the token while Vault allows, and logs in again when it will not
// (the token reached its max TTL, or renewal failed), before the token expires.
func (c *Client) keepAlive(auth *api.Secret) {
	defer close(c.done)
	ctx, cancel := context.WithCancel(context.Background()) // ends a login under way when Close stops us
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := time.Second
	for {
		if auth.Auth.Renewable && auth.Auth.LeaseDuration > 0 {
			if !c.watch(auth) {
				return
			}
		} else if auth.Auth.LeaseDuration > 0 {
			// Not renewable: log in again at two thirds of its life.
			wait := time.Duration(auth.Auth.LeaseDuration) * time.Second * 2 / 3
			select {
			case <-c.stop:
				return
			case <-time.After(wait):
			}
		} else {
			<-c.stop // a token without a TTL (a root token) never expires
			return
		}
		for {
			c.loginMu.Lock()
			next, err := c.login(ctx)
			if err == nil {
				c.lastLogin = time.Now()
			}
			c.loginMu.Unlock()
			if err == nil {
				c.log.Info("logged in to vault again", "auth", c.cfg.Auth)
				auth, backoff = next, time.Second
				break
			}
			c.log.Error("vault login failed; retrying", "auth", c.cfg.Auth, "err", err, "retry_in", backoff.String())
			select {
			case <-c.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
		}
	}
}

// withLogin runs op, and when Vault refuses it with 403 (the token expired or was
// revoked under us, e.g. at its max TTL between renewal and the next login) logs in
// again, at most once a second, and runs it once more.
func (c *Client) withLogin(ctx context.Context, op func() error) error {
	err := op()
	var re *api.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 403 {
		return err
	}
	c.loginMu.Lock()
	if time.Since(c.lastLogin) >= time.Second {
		if _, lerr := c.login(ctx); lerr != nil {
			c.loginMu.Unlock()
			return errors.Join(err, lerr)
		}
		c.lastLogin = time.Now()
		c.log.Info("logged in to vault again", "auth", c.cfg.Auth, "after", "permission denied")
	}
	c.loginMu.Unlock()
	return op()
}

// watch renews auth's token until it can no longer be renewed; it reports false when
// the client was closed.
func (c *Client) watch(auth *api.Secret) bool {
	w, err := c.api.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: auth})
	if err != nil {
		c.log.Error("vault token renewal", "err", err)
		return true
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-c.stop:
			return false
		case err := <-w.DoneCh():
			if err != nil {
				c.log.Warn("vault token renewal stopped; logging in again", "err", err)
			}
			return true
		case <-w.RenewCh():
			c.log.Debug("vault token renewed")
		}
	}
}
