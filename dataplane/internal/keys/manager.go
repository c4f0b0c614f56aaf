package keys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-gw/portcullis/shared/keyevents"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/secretfile"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

// Source yields the key the gateway presents to an upstream; "" means none.
type Source interface {
	Key(ctx context.Context) (string, error)
}

// Overlapping is a Source that may hold a second valid key: during a rotation's
// overlap, the previous one. When the upstream refuses a key, Other gives the other
// valid one (if any) for exactly one retry, and Refused asks the source to check
// Vault for a newer key.
type Overlapping interface {
	Source
	Other(refused string) (string, bool)
	Refused()
}

// Versioned is a Source whose keys have versions (KV v2).
type Versioned interface {
	// Version returns the version of key, or 0 if the source does not hold it.
	Version(key string) int
}

// DefaultRefreshInterval is how often a Vault source checks its secret's metadata for
// a version it missed the event of: the safety net behind PC_KEYS.
const DefaultRefreshInterval = 30 * time.Second

// ManagerOptions configure a Manager.
type ManagerOptions struct {
	// Vault is the logged-in client; nil when the worker has no Vault, and then
	// deployments with a Vault key source are unusable with a clear reason.
	Vault *vaultclient.Client
	// AllowEnvKeys lets deployments take their key from an environment variable
	// (key_source env, development only).
	AllowEnvKeys bool
	// KeyDir is the directory key_source file keys must lie under; AllowAnyKeyFile
	// lets them be anywhere (development only). See FileOptions.
	KeyDir          string
	AllowAnyKeyFile bool
	// Getenv reads environment variables; nil means os.Getenv.
	Getenv func(string) string
	// WorkerID and Region identify this worker in key-access events.
	WorkerID, Region string
	// Access receives one event per read of a key from Vault; nil drops them.
	Access func(keyevents.Access)
	// RefreshInterval is the period of the metadata check; zero means
	// DefaultRefreshInterval.
	RefreshInterval time.Duration
	Log             *slog.Logger
}

// Manager holds the key sources of a worker's deployments, one per deployment and
// key settings, and keeps them as deployments come and go with the policy. It
// follows key events and checks Vault periodically. Safe for concurrent use.
//
// Run runs its periodic check. Every goroutine its sources start (background reads
// after a refused key, lease keeping) runs under ctx, which Close cancels, and is
// counted in wg, which Close waits for.
type Manager struct {
	o   ManagerOptions
	seq atomic.Uint64 // key-access event sequence

	mu      sync.Mutex // guards sources
	sources map[string]*managed

	ctx    context.Context
	cancel context.CancelFunc
	life   sync.Mutex // guards closed, and wg.Add against Close's wg.Wait
	closed bool
	wg     sync.WaitGroup
}

// closeWait bounds how long Close waits for the manager's goroutines once their
// context is cancelled; a Vault call honours the cancellation well within it.
const closeWait = 5 * time.Second

// async runs f in a goroutine of the manager, under its context, unless the
// manager is closed.
func (m *Manager) async(f func(ctx context.Context)) {
	m.life.Lock()
	defer m.life.Unlock()
	if m.closed {
		return
	}
	m.wg.Go(func() { f(m.ctx) })
}

// managed is one deployment's source and the settings it was built from.
type managed struct {
	source   string // key_source
	path     string
	provider string
	src      Source
	vault    refresher // nil for sources that do not talk to Vault
}

// refresher is a source backed by Vault.
type refresher interface {
	refresh(ctx context.Context, reason string)
	onEvent(ctx context.Context, e keyevents.Event)
	close()
}

// NewManager returns a manager; Run runs its periodic checks.
func NewManager(o ManagerOptions) *Manager {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = DefaultRefreshInterval
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background()) // the manager's own lifetime; Close cancels it
	return &Manager{o: o, sources: map[string]*managed{}, ctx: ctx, cancel: cancel}
}

// Source returns the key source of deployment d: the one already built when d's key
// settings are unchanged (so keys, leases and overlaps survive unrelated policy
// changes), else a new one.
func (m *Manager) Source(d policy.Deployment) Source {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.sources[d.Name]; ok && cur.source == d.KeySource && cur.path == d.KeyPath && cur.provider == d.Provider {
		return cur.src
	}
	if old, ok := m.sources[d.Name]; ok && old.vault != nil {
		old.vault.close()
	}
	mg := &managed{source: d.KeySource, path: d.KeyPath, provider: d.Provider}
	switch d.KeySource {
	case policy.KeySourceNone:
		mg.src = None{}
	case policy.KeySourceFile:
		mg.src = NewFile(d.KeyPath, FileOptions{Dir: m.o.KeyDir, AllowAnyDir: m.o.AllowAnyKeyFile})
		if !m.o.AllowAnyKeyFile && (m.o.KeyDir == "" || secretfile.Within(m.o.KeyDir, d.KeyPath) != nil) {
			m.o.Log.Error("deployment's key file is refused: it is not under "+SettingKeyDir+"; its requests answer 503 upstream_key_unavailable",
				"deployment", d.Name, "key_path", d.KeyPath, "key_dir", m.o.KeyDir)
		}
	case policy.KeySourceEnv:
		if !m.o.AllowEnvKeys {
			mg.src = Unavailable{Source: d.KeySource, Reason: "keys in environment variables are refused; " +
				"set PORTCULLIS_DEV_ALLOW_ENV_KEYS=true (development only)"}
			break
		}
		mg.src = envSource{name: d.KeyPath, getenv: m.o.Getenv}
	case policy.KeySourceVault, policy.KeySourceVaultDynamic:
		if m.o.Vault == nil {
			mg.src = Unavailable{Source: d.KeySource, Reason: "this worker has no Vault: set PORTCULLIS_VAULT_ADDR"}
			break
		}
		if d.KeySource == policy.KeySourceVault {
			s := newKVSource(m, d)
			mg.src, mg.vault = s, s
		} else {
			s := newLeasedSource(m, d)
			mg.src, mg.vault = s, s
		}
	default:
		mg.src = Unavailable{Source: d.KeySource, Reason: "unknown key source"}
	}
	m.sources[d.Name] = mg
	return mg.src
}

// Forget drops the sources of deployments not in keep (removed from the policy).
func (m *Manager) Forget(keep map[string]bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, mg := range m.sources {
		if !keep[name] {
			if mg.vault != nil {
				mg.vault.close()
			}
			delete(m.sources, name)
		}
	}
}

// Run runs the periodic metadata check until ctx ends or the manager is closed,
// then returns nil. Close still ends what the sources started (background reads,
// lease keeping), which outlives Run: those serve the requests in flight.
func (m *Manager) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(m.ctx, cancel)()
	t := time.NewTicker(m.o.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			for _, r := range m.refreshers() {
				r.refresh(ctx, keyevents.ReasonRefresh)
			}
		}
	}
}

// Close stops the periodic checks, the background reads and every source's lease
// keeping, and waits for them, at most closeWait. Closing twice does nothing more.
func (m *Manager) Close() {
	m.life.Lock()
	already := m.closed
	m.closed = true
	m.life.Unlock()
	if already {
		return
	}
	m.cancel()
	m.mu.Lock()
	for _, mg := range m.sources {
		if mg.vault != nil {
			mg.vault.close()
		}
	}
	m.mu.Unlock()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeWait):
		m.o.Log.Warn("key manager goroutines still running after close", "waited", closeWait)
	}
}

// Apply acts on a key event: the deployment it names re-reads its key (a revocation
// first drops the revoked key).
func (m *Manager) Apply(ctx context.Context, e keyevents.Event) {
	m.mu.Lock()
	mg, ok := m.sources[e.Deployment]
	m.mu.Unlock()
	if !ok || mg.vault == nil {
		return
	}
	mg.vault.onEvent(ctx, e)
}

func (m *Manager) refreshers() []refresher {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []refresher
	for _, mg := range m.sources {
		if mg.vault != nil {
			out = append(out, mg.vault)
		}
	}
	return out
}

// access records one read of a key from Vault.
func (m *Manager) access(deployment, path string, version int, reason string, err error) {
	if m.o.Access == nil {
		return
	}
	a := keyevents.Access{
		ID: m.o.WorkerID + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatUint(m.seq.Add(1), 10),
		At: time.Now().UTC(), ActorKind: keyevents.ActorWorker, ActorID: m.o.WorkerID, Region: m.o.Region,
		Deployment: deployment, Path: path, KeyVersion: version, Reason: reason, OK: err == nil,
	}
	if err != nil {
		a.Error = err.Error() // vaultclient errors name paths and versions, never values
	}
	m.o.Access(a)
}

// envSource reads the key from an environment variable (development only).
type envSource struct {
	name   string
	getenv func(string) string
}

func (e envSource) Key(context.Context) (string, error) {
	if v := e.getenv(e.name); v != "" {
		return v, nil
	}
	return "", fmt.Errorf("%w: environment variable %s is empty or not set", ErrUnavailable, e.name)
}

// ErrRevoked reports a deployment whose key was revoked with no successor to use.
var ErrRevoked = errors.New("the key was revoked and no newer one is available")
