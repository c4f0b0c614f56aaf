// Package natsauth is who may do what on Portcullis's NATS (docs/design.md §3): a
// NATS operator, one account for Portcullis (PORTCULLIS) and a system account, and a
// user per role, each with least-privilege subject permissions:
//
//   - controlplane: everything in the account; it alone writes the policy, key
//     events, checkpoints and alerts, and creates the buckets and streams;
//   - dp-<region>: a region's data planes read PC_POLICY, follow key rotations and
//     revocations, use the PC_LIMITS and PC_WORKERS buckets, and publish only
//     their region's audit, health and key-access subjects; they create (never
//     update) their region's audit stream and create no consumer;
//   - ops: read-only monitoring: stream and consumer info, message gets, and the
//     health, alert and checkpoint subjects.
//
// Every user receives replies on its own inbox, _INBOX.<user name> (natsconn sets
// it from the credentials file), so that no identity reads another's replies.
//
// An Authority holds the operator's, the account's and the system account's nkeys in
// a directory. It issues user credentials (.creds files), configures an embedded
// nats-server to trust them (make run and the tests), and writes the configuration
// a production nats-server includes (deploy/nats/).
package natsauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/secretfile"
)

// The names of the account and the system account in their JWTs.
const (
	AccountName       = "PORTCULLIS"
	SystemAccountName = "SYS"
)

// The files of an Authority's directory.
const (
	OperatorSeedFile = "operator.nk"   // the operator's nkey seed: signs the accounts
	AccountSeedFile  = "account.nk"    // the PORTCULLIS account's seed: signs its users
	SystemSeedFile   = "system.nk"     // the system account's seed
	OperatorJWTFile  = "operator.jwt"  // the operator's JWT, issued once (no secret)
	ServerConfigFile = "accounts.conf" // written by WriteServerConfig
	UsersFile        = "users.json"    // the users issued and revoked (public keys only)
	CredsSuffix      = ".creds"        // <role name>.creds, written by WriteCreds
	seedFileMaxBytes = 4 << 10         // an nkey seed is 58 bytes
)

// Role is a NATS user: its name and what it may publish and subscribe to.
type Role struct {
	Name        string
	Permissions jwt.Permissions
}

// ControlPlane is the control plane's user: every subject of the account.
func ControlPlane() Role {
	r := Role{Name: "controlplane"}
	r.Permissions.Pub.Allow.Add(">")
	r.Permissions.Sub.Allow.Add(">")
	return r
}

// DataPlane is the user of region's data planes.
func DataPlane(region string) Role {
	name := "dp-" + natsnames.Token(region)
	r := Role{Name: name}
	auditStream := natsnames.AuditStream(region)
	policy := natsnames.KVStream(natsnames.PolicyBucket)
	limits := natsnames.KVStream(natsnames.LimitsBucket)
	workers := natsnames.KVStream(natsnames.WorkersBucket)
	pub := []string{
		// What a region's data planes write: their audit events, health reports
		// and key-access events, and the shared limit counters and worker slots.
		natsnames.AuditSubjects(region),
		natsnames.HealthSubjectsOf(region),
		natsnames.KeysAccessSubjectsOf(region),
		natsnames.KVSubject(natsnames.LimitsBucket, ">"),
		natsnames.KVSubject(natsnames.WorkersBucket, ">"),
		// The JetStream API calls this takes: the state of the buckets and of their
		// own audit stream, gets of keys and counters, and creating (never updating)
		// their audit stream. No consumer of any kind: a consumer's deliver subject
		// and a stream's republish or sources settings would have the server publish
		// for them where their own permissions refuse.
		"$JS.API.INFO",
		"$JS.API.STREAM.CREATE." + auditStream,
	}
	for _, s := range []string{policy, limits, workers, auditStream} {
		pub = append(pub, "$JS.API.STREAM.INFO."+s)
	}
	for _, s := range []string{policy, limits, workers} {
		pub = append(pub, "$JS.API.DIRECT.GET."+s, "$JS.API.DIRECT.GET."+s+".>", "$JS.API.STREAM.MSG.GET."+s)
	}
	r.Permissions.Pub.Allow.Add(pub...)
	// They follow key rotations and revocations as they are announced, and hear
	// when the policy is written (then they read it).
	r.Permissions.Sub.Allow.Add(natsnames.KeysLifecycleSubjects...)
	r.Permissions.Sub.Allow.Add(natsnames.KVSubject(natsnames.PolicyBucket, natsnames.PolicySnapshotKey))
	r.Permissions.Sub.Allow.Add(natsnames.InboxPrefix(name) + ".>")
	return r
}

// Ops is a read-only user for operators' tools: stream and consumer state, message
// gets, and the health, alert and checkpoint subjects; it writes nothing.
func Ops() Role {
	r := Role{Name: "ops"}
	r.Permissions.Pub.Allow.Add("$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST",
		"$JS.API.STREAM.INFO.*", "$JS.API.CONSUMER.NAMES.*", "$JS.API.CONSUMER.LIST.*", "$JS.API.CONSUMER.INFO.*.*",
		"$JS.API.DIRECT.GET.>", "$JS.API.STREAM.MSG.GET.*")
	r.Permissions.Sub.Allow.Add(natsnames.InboxPrefix(r.Name)+".>",
		natsnames.HealthSubjects, natsnames.AlertsSubjects, natsnames.CheckpointsSubjects)
	return r
}

// RoleNamed is the role of a user name: controlplane, ops or dp-<region>.
func RoleNamed(name string) (Role, error) {
	switch {
	case name == "controlplane":
		return ControlPlane(), nil
	case name == "ops":
		return Ops(), nil
	case strings.HasPrefix(name, "dp-") && len(name) > len("dp-") && natsnames.Token(name) == name:
		return DataPlane(strings.TrimPrefix(name, "dp-")), nil
	}
	return Role{}, fmt.Errorf("unknown NATS role %q: want controlplane, ops or dp-<region>", name)
}

// Authority is the operator and the accounts: the keys that sign Portcullis's
// accounts and users.
type Authority struct {
	dir                       string
	operator, account, system nkeys.KeyPair
	operatorClaims            *jwt.OperatorClaims
	operatorJWT               string

	mu                    sync.Mutex // guards users and the account's JWT, which carries the revocations
	users                 users
	accountJWT, systemJWT string
}

// users is what UsersFile records: every user the authority issued, by role, and
// the revoked ones. It holds public keys only.
type users struct {
	Issued []issuedUser `json:"issued"`
	// Revoked maps a user's public key to when it was revoked (Unix seconds); the
	// account's JWT carries it, and a server refuses a user JWT issued before then.
	Revoked map[string]int64 `json:"revoked"`
}

type issuedUser struct {
	Role string    `json:"role"`
	Key  string    `json:"key"`
	At   time.Time `json:"at"`
}

// LoadOrCreate loads the authority whose seeds are in dir, creating the directory
// and any missing seed. The seed files must be readable by their owner only.
// Keeping the account's seed matters: JetStream keeps an account's streams under
// its public key.
func LoadOrCreate(dir string) (*Authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("nats auth: create %s: %w", dir, err)
	}
	a := &Authority{dir: dir}
	var err error
	if a.operator, err = loadOrCreateSeed(filepath.Join(dir, OperatorSeedFile), nkeys.CreateOperator); err != nil {
		return nil, err
	}
	if a.account, err = loadOrCreateSeed(filepath.Join(dir, AccountSeedFile), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	if a.system, err = loadOrCreateSeed(filepath.Join(dir, SystemSeedFile), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	if err := a.loadUsers(); err != nil {
		return nil, err
	}
	if err := a.signOperator(); err != nil {
		return nil, err
	}
	return a, a.sign()
}

// signOperator loads the operator's JWT from OperatorJWTFile, or issues and writes
// it: it must stay the same, since a running nats-server cannot reload a changed
// operator.
func (a *Authority) signOperator() error {
	opPub, _ := a.operator.PublicKey()
	sysPub, _ := a.system.PublicKey()
	path := filepath.Join(a.dir, OperatorJWTFile)
	if data, err := os.ReadFile(path); err == nil {
		token := strings.TrimSpace(string(data))
		if oc, err := jwt.DecodeOperatorClaims(token); err == nil && oc.Subject == opPub && oc.Issuer == opPub && oc.SystemAccount == sysPub {
			a.operatorJWT, a.operatorClaims = token, oc
			return nil
		}
	}
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "portcullis"
	oc.SystemAccount = sysPub
	token, err := oc.Encode(a.operator)
	if err != nil {
		return fmt.Errorf("nats auth: sign the operator: %w", err)
	}
	if a.operatorClaims, err = jwt.DecodeOperatorClaims(token); err != nil {
		return fmt.Errorf("nats auth: operator JWT: %w", err)
	}
	a.operatorJWT = token
	if err := os.WriteFile(path, []byte(token+"\n"), 0o644); err != nil {
		return fmt.Errorf("nats auth: %w", err)
	}
	return nil
}

// sign issues the accounts' JWTs, the PORTCULLIS account's with the revocations.
// a.mu is held or a is not shared yet.
func (a *Authority) sign() error {
	accPub, _ := a.account.PublicKey()
	sysPub, _ := a.system.PublicKey()
	var err error
	ac := jwt.NewAccountClaims(accPub)
	ac.Name = AccountName
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	for key, at := range a.users.Revoked {
		ac.RevokeAt(key, time.Unix(at, 0))
	}
	if a.accountJWT, err = ac.Encode(a.operator); err != nil {
		return fmt.Errorf("nats auth: sign the account: %w", err)
	}
	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = SystemAccountName
	if a.systemJWT, err = sc.Encode(a.operator); err != nil {
		return fmt.Errorf("nats auth: sign the system account: %w", err)
	}
	return nil
}

// Dir is the directory of the authority's files.
func (a *Authority) Dir() string { return a.dir }

// AccountPublicKey is the PORTCULLIS account's public key.
func (a *Authority) AccountPublicKey() string {
	pub, _ := a.account.PublicKey()
	return pub
}

// Creds returns a credentials file (user JWT and nkey seed) for a new user of r,
// signed by the account, and records the user in UsersFile so that Revoke can
// revoke it. It holds a secret.
func (a *Authority) Creds(r Role) ([]byte, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("nats auth: create user %s: %w", r.Name, err)
	}
	defer kp.Wipe()
	pub, _ := kp.PublicKey()
	a.mu.Lock()
	unlock, err := a.lockUsers()
	if err == nil {
		if err = a.loadUsers(); err == nil {
			a.users.Issued = append(a.users.Issued, issuedUser{Role: r.Name, Key: pub, At: time.Now().UTC()})
			err = a.saveUsers()
		}
		unlock()
	}
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	uc := jwt.NewUserClaims(pub)
	uc.Name = r.Name
	uc.Permissions = r.Permissions
	token, err := uc.Encode(a.account)
	if err != nil {
		return nil, fmt.Errorf("nats auth: sign user %s: %w", r.Name, err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	return jwt.FormatUserConfig(token, seed)
}

// Revoke revokes every user issued for the role named role, including the one in
// its credentials file, and returns how many it revoked. Servers refuse them once
// they have the account's new JWT: an embedded server at its next start, others
// once they load the accounts.conf WriteServerConfig writes (nats-server --signal
// reload). New credentials for the role are new users, which stay valid.
func (a *Authority) Revoke(role string) (int, error) {
	keys := map[string]bool{}
	if data, err := os.ReadFile(filepath.Join(a.dir, role+CredsSuffix)); err == nil {
		if token, err := jwt.ParseDecoratedJWT(data); err == nil {
			if uc, err := jwt.DecodeUserClaims(token); err == nil && uc.Issuer == a.AccountPublicKey() {
				keys[uc.Subject] = true
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	unlock, err := a.lockUsers()
	if err != nil {
		return 0, err
	}
	defer unlock()
	if err := a.loadUsers(); err != nil {
		return 0, err
	}
	for _, u := range a.users.Issued {
		if u.Role == role {
			keys[u.Key] = true
		}
	}
	now := time.Now().Unix()
	n := 0
	for key := range keys {
		if _, done := a.users.Revoked[key]; done {
			continue
		}
		if a.users.Revoked == nil {
			a.users.Revoked = map[string]int64{}
		}
		a.users.Revoked[key] = now
		n++
	}
	if err := a.saveUsers(); err != nil {
		return 0, err
	}
	return n, a.sign()
}

// lockUsers takes the directory's lock on UsersFile, across processes (a control
// plane issuing credentials while controlplane nats-auth revokes some), and
// returns its release.
func (a *Authority) lockUsers() (func(), error) {
	f, err := os.OpenFile(filepath.Join(a.dir, "users.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("nats auth: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("nats auth: lock %s: %w", f.Name(), err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// loadUsers reads UsersFile again, so that what another process (controlplane
// nats-auth beside a running control plane) wrote is kept. a.mu and the lock are
// held, or a is not shared yet.
func (a *Authority) loadUsers() error {
	data, err := os.ReadFile(filepath.Join(a.dir, UsersFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("nats auth: %w", err)
	}
	var u users
	if err := json.Unmarshal(data, &u); err != nil {
		return fmt.Errorf("nats auth: %s: %w", filepath.Join(a.dir, UsersFile), err)
	}
	a.users = u
	return nil
}

// saveUsers writes UsersFile. a.mu is held.
func (a *Authority) saveUsers() error {
	data, err := json.MarshalIndent(a.users, "", "  ")
	if err != nil {
		return err
	}
	return replaceFile(filepath.Join(a.dir, UsersFile), data)
}

// CredsPath is where WriteCreds writes r's credentials.
func (a *Authority) CredsPath(r Role) string { return filepath.Join(a.dir, r.Name+CredsSuffix) }

// WriteCreds writes new credentials for r to CredsPath(r), readable by its owner
// only, replacing the file atomically, and returns the path. A client reads its
// credentials again when it reconnects, so replacing them under a running client is
// safe: the account that signs them stays the same.
func (a *Authority) WriteCreds(r Role) (string, error) {
	creds, err := a.Creds(r)
	if err != nil {
		return "", err
	}
	path := a.CredsPath(r)
	return path, replaceFile(path, creds)
}

// replaceFile replaces the file at path with data, atomically, readable by its
// owner only.
func replaceFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*") // mode 0600
	if err != nil {
		return fmt.Errorf("nats auth: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("nats auth: write %s: %w", path, err)
	}
	return nil
}

// Configure makes an embedded server trust the operator and resolve both accounts
// from memory.
func (a *Authority) Configure(opts *server.Options) {
	a.mu.Lock()
	defer a.mu.Unlock()
	resolver := &server.MemAccResolver{}
	_ = resolver.Store(must(a.account.PublicKey()), a.accountJWT)
	_ = resolver.Store(must(a.system.PublicKey()), a.systemJWT)
	opts.TrustedOperators = []*jwt.OperatorClaims{a.operatorClaims}
	opts.AccountResolver = resolver
	opts.SystemAccount = a.operatorClaims.SystemAccount
}

// WriteServerConfig writes accounts.conf to the authority's directory: the part of
// a nats-server configuration that trusts the operator and preloads the accounts
// (deploy/nats/nats-server.conf includes it). It holds JWTs only, no secret.
func (a *Authority) WriteServerConfig() error {
	opJWT := a.operatorJWT
	a.mu.Lock()
	preload := map[string]string{must(a.account.PublicKey()): a.accountJWT, must(a.system.PublicKey()): a.systemJWT}
	a.mu.Unlock()
	pubs := make([]string, 0, len(preload))
	for pub := range preload {
		pubs = append(pubs, pub)
	}
	sort.Strings(pubs)
	var b strings.Builder
	b.WriteString("# Written by `controlplane nats-auth`: the Portcullis operator, its system account\n")
	b.WriteString("# and the PORTCULLIS account. Users authenticate with credentials the account signs.\n")
	fmt.Fprintf(&b, "operator: %q\n", opJWT)
	fmt.Fprintf(&b, "system_account: %s\n", a.operatorClaims.SystemAccount)
	b.WriteString("resolver: MEMORY\nresolver_preload: {\n")
	for _, pub := range pubs {
		fmt.Fprintf(&b, "  %s: %q\n", pub, preload[pub])
	}
	b.WriteString("}\n")
	// No secret, but servers may reload it at any moment: replaced atomically.
	if err := replaceFile(filepath.Join(a.dir, ServerConfigFile), []byte(b.String())); err != nil {
		return err
	}
	return os.Chmod(filepath.Join(a.dir, ServerConfigFile), 0o644)
}

// loadOrCreateSeed reads the nkey seed at path, or writes a new one made by create.
func loadOrCreateSeed(path string, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	data, err := secretfile.Read("nats auth seed", path, seedFileMaxBytes)
	if err == nil {
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(data))))
		if err != nil {
			return nil, fmt.Errorf("nats auth: %s holds no nkey seed", path)
		}
		return kp, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("nats auth: %w", err)
	}
	kp, err := create()
	if err != nil {
		return nil, fmt.Errorf("nats auth: create a key: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	return kp, writeNew(path, append(seed, '\n'))
}

// writeNew writes a new file that only its owner can read.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("nats auth: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("nats auth: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("nats auth: write %s: %w", path, err)
	}
	return nil
}

func must(pub string, err error) string {
	if err != nil {
		panic(err) // the public key of a key pair made or loaded here always derives
	}
	return pub
}
