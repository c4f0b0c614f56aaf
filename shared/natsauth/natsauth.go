// Package natsauth is who may do what on Portcullis's NATS (docs/nats.md): a NATS
// operator and its accounts, and a user per role with least-privilege permissions.
//
//   - PORTCULLIS holds every bucket and stream (the only account with JetStream)
//     and the controlplane user, who may do everything in it;
//   - DP_<REGION> holds the region's data planes (user dp-<region>): it imports from
//     PORTCULLIS only their region's audit, health and key-access subjects, the
//     PC_LIMITS and PC_WORKERS writes, reads of the buckets under JSAPIPrefix, the
//     request for their audit stream (which the control plane creates), and the
//     key and policy announcements;
//   - OPS holds the read-only ops user, the same way;
//   - SYS is the system account.
//
// Data planes live in accounts of their own because subject permissions do not
// check a request's reply subject: within PORTCULLIS, a JetStream answer sent to a
// reply subject a data plane chose would be published by the server, anywhere. A
// service import's replies come back through the server instead.
//
// Every user receives replies on its own inbox, _INBOX.<user name> (natsconn sets
// it from the credentials file).
//
// An Authority holds the operator's and the accounts' nkeys in a directory. It
// issues user credentials (.creds files), configures an embedded nats-server to
// trust them (make run and the tests), and writes the configuration a production
// nats-server includes (deploy/nats/).
package natsauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
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

// JSAPIPrefix is where the users of the data-plane and ops accounts reach the
// PORTCULLIS account's JetStream API: their accounts import the calls they may make
// under this prefix (their own accounts have no JetStream). Their user JWTs carry
// it in the tag JSAPIPrefixTag, which natsconn reads.
const (
	JSAPIPrefix    = "pc.js.api"
	JSAPIPrefixTag = "js-api-prefix:"
)

// The accounts users are in.
const (
	opsAccount       = "OPS"
	dataPlanePrefix  = "DP_" // DP_<REGION>
	accountSeedStem  = "account-"
	dataPlaneRolePre = "dp-"
)

// Role is a NATS user: its name, the account it is in, what that account imports
// from PORTCULLIS, and what the user may publish and subscribe to in it.
type Role struct {
	Name        string
	Permissions jwt.Permissions
	account     string      // AccountName, opsAccount or DP_<REGION>
	imports     jwt.Imports // from PORTCULLIS; Account is filled in when signed
}

// grants builds a role in an account of its own: each service import of a
// PORTCULLIS subject is a subject the user may publish, each stream import one it
// may subscribe to. A request through a service import gets its reply through the
// server, so the reply subject a user names cannot make JetStream publish for it
// in PORTCULLIS: why these roles live in accounts of their own.
type grants struct{ r *Role }

// service imports remote, under JSAPIPrefix when it is a JetStream API subject.
func (g grants) service(remote string) {
	local := remote
	if rest, ok := strings.CutPrefix(remote, "$JS.API."); ok {
		local = JSAPIPrefix + "." + rest
	}
	g.r.imports.Add(&jwt.Import{Subject: jwt.Subject(remote), LocalSubject: jwt.RenamingSubject(local), Type: jwt.Service})
	g.r.Permissions.Pub.Allow.Add(local)
}

// kvWrites imports the writes to bucket where a KV client with JSAPIPrefix sends
// them (its puts and deletes go to <prefix>.$KV.<bucket>.<key>).
func (g grants) kvWrites(bucket string) {
	remote := natsnames.KVSubject(bucket, ">")
	local := JSAPIPrefix + "." + remote
	g.r.imports.Add(&jwt.Import{Subject: jwt.Subject(remote), LocalSubject: jwt.RenamingSubject(local), Type: jwt.Service})
	g.r.Permissions.Pub.Allow.Add(local)
}

// stream imports what PORTCULLIS publishes on subject.
func (g grants) stream(subject string) {
	g.r.imports.Add(&jwt.Import{Subject: jwt.Subject(subject), Type: jwt.Stream})
	g.r.Permissions.Sub.Allow.Add(subject)
}

// ControlPlane is the control plane's user: every subject of the PORTCULLIS
// account.
func ControlPlane() Role {
	r := Role{Name: "controlplane", account: AccountName}
	r.Permissions.Pub.Allow.Add(">")
	r.Permissions.Sub.Allow.Add(">")
	return r
}

// DataPlane is the user of region's data planes, in the account DP_<REGION>.
func DataPlane(region string) Role {
	name := dataPlaneRolePre + natsnames.Token(region)
	r := Role{Name: name, account: dataPlanePrefix + strings.ToUpper(natsnames.Token(region))}
	g := grants{&r}
	auditStream := natsnames.AuditStream(region)
	policy := natsnames.KVStream(natsnames.PolicyBucket)
	limits := natsnames.KVStream(natsnames.LimitsBucket)
	workers := natsnames.KVStream(natsnames.WorkersBucket)
	// What a region's data planes write: their audit events, health reports and
	// key-access events, and the shared limit counters and worker slots.
	g.service(natsnames.AuditSubjects(region))
	g.service(natsnames.HealthSubjectsOf(region))
	g.service(natsnames.KeysAccessSubjectsOf(region))
	g.service(natsnames.KVSubject(natsnames.LimitsBucket, ">")) // published to directly
	g.kvWrites(natsnames.WorkersBucket)
	// The JetStream API calls this takes: the state of the buckets and of their own
	// audit stream, and gets of keys and counters. No consumer of any kind (a
	// consumer's deliver subject would have the server publish where the creator may
	// not), and no stream created or updated (a stream's republish or sources would
	// too).
	for _, s := range []string{policy, limits, workers, auditStream} {
		g.service("$JS.API.STREAM.INFO." + s)
	}
	for _, s := range []string{policy, limits, workers} {
		g.service("$JS.API.DIRECT.GET." + s)
		g.service("$JS.API.DIRECT.GET." + s + ".>")
		g.service("$JS.API.STREAM.MSG.GET." + s)
	}
	// Their audit stream is created by the control plane when they ask: a stream's
	// settings could have the server publish or copy for them.
	g.service(natsnames.AuditStreamCreateSubject(region))
	// They follow key rotations and revocations as they are announced, and hear
	// when the policy is written (then they read it).
	for _, s := range natsnames.KeysLifecycleSubjects {
		g.stream(s)
	}
	g.stream(natsnames.KVSubject(natsnames.PolicyBucket, natsnames.PolicySnapshotKey))
	r.Permissions.Sub.Allow.Add(natsnames.InboxPrefix(name) + ".>")
	return r
}

// Ops is a read-only user for operators' tools, in the account OPS: stream and
// consumer state, message gets, and the alert and checkpoint subjects; it writes
// nothing.
func Ops() Role {
	r := Role{Name: "ops", account: opsAccount}
	g := grants{&r}
	for _, s := range opsAPI {
		g.service(s)
	}
	g.stream(natsnames.AlertsSubjects)
	g.stream(natsnames.CheckpointsSubjects)
	r.Permissions.Sub.Allow.Add(natsnames.InboxPrefix(r.Name) + ".>")
	return r
}

// opsAPI are the read-only JetStream API calls of ops.
var opsAPI = []string{"$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST", "$JS.API.STREAM.INFO.*",
	"$JS.API.CONSUMER.NAMES.*", "$JS.API.CONSUMER.LIST.*", "$JS.API.CONSUMER.INFO.*.*", "$JS.API.DIRECT.GET.>",
	"$JS.API.STREAM.MSG.GET.*"}

// exports are what PORTCULLIS offers the other accounts: every import of every
// role falls under one of them (each account's imports are fixed by its signed JWT,
// so a public export gives an account only what it imports).
func exports() jwt.Exports {
	var e jwt.Exports
	for _, s := range append([]string{"audit.*.>", "health.*.*", "keys.access.*.*",
		natsnames.KVSubject(natsnames.LimitsBucket, ">"), natsnames.KVSubject(natsnames.WorkersBucket, ">"),
		natsnames.AuditStreamCreateSubjects}, opsAPI...) {
		e.Add(&jwt.Export{Subject: jwt.Subject(s), Type: jwt.Service})
	}
	for _, s := range append([]string{natsnames.KVSubject(natsnames.PolicyBucket, natsnames.PolicySnapshotKey),
		natsnames.AlertsSubjects, natsnames.CheckpointsSubjects}, natsnames.KeysLifecycleSubjects...) {
		e.Add(&jwt.Export{Subject: jwt.Subject(s), Type: jwt.Stream})
	}
	return e
}

// RoleNamed is the role of a user name: controlplane, ops or dp-<region>.
func RoleNamed(name string) (Role, error) {
	switch {
	case name == "controlplane":
		return ControlPlane(), nil
	case name == "ops":
		return Ops(), nil
	case strings.HasPrefix(name, dataPlaneRolePre) && len(name) > len(dataPlaneRolePre) && natsnames.Token(name) == name:
		return DataPlane(strings.TrimPrefix(name, dataPlaneRolePre)), nil
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

	mu       sync.Mutex               // guards what follows
	others   map[string]nkeys.KeyPair // the OPS and DP_<REGION> accounts' keys, by account name
	roles    map[string]Role          // the role of each of those accounts, for its imports
	users    users
	jwts     map[string]string      // account public key -> its JWT, revocations included
	resolver *server.MemAccResolver // the embedded server's, once Configure ran
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
	a.others, a.roles = map[string]nkeys.KeyPair{}, map[string]Role{}
	if err := a.loadAccount(Ops()); err != nil {
		return nil, err
	}
	seeds, err := filepath.Glob(filepath.Join(dir, accountSeedStem+dataPlaneRolePre+"*.nk"))
	if err != nil {
		return nil, fmt.Errorf("nats auth: %w", err)
	}
	for _, seed := range seeds {
		r, err := RoleNamed(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(seed), accountSeedStem), ".nk"))
		if err != nil {
			return nil, fmt.Errorf("nats auth: %s: %w", seed, err)
		}
		if err := a.loadAccount(r); err != nil {
			return nil, err
		}
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

// loadAccount loads, or creates, the key of r's account (not PORTCULLIS). a.mu is
// held or a is not shared yet.
func (a *Authority) loadAccount(r Role) error {
	if _, ok := a.others[r.account]; ok {
		return nil
	}
	kp, err := loadOrCreateSeed(filepath.Join(a.dir, accountSeedStem+r.Name+".nk"), nkeys.CreateAccount)
	if err != nil {
		return err
	}
	a.others[r.account], a.roles[r.account] = kp, r
	return nil
}

// sign issues every account's JWT: PORTCULLIS with JetStream and its exports, the
// system account, and the OPS and DP_<REGION> accounts with their imports; each
// with the revocations of its users. It hands them to the embedded server's
// resolver, if there is one: an account it has not loaded yet is found there. a.mu
// is held or a is not shared yet.
func (a *Authority) sign() error {
	pc := must(a.account.PublicKey())
	// Every revocation goes into every account: a user key is in one account only,
	// but which one may have changed between versions (data planes were users of
	// PORTCULLIS before they had accounts of their own).
	claims := func(kp nkeys.KeyPair, name string) *jwt.AccountClaims {
		ac := jwt.NewAccountClaims(must(kp.PublicKey()))
		ac.Name = name
		for key, at := range a.users.Revoked {
			ac.RevokeAt(key, time.Unix(at, 0))
		}
		return ac
	}
	jwts := map[string]string{}
	add := func(ac *jwt.AccountClaims) error {
		token, err := ac.Encode(a.operator)
		if err != nil {
			return fmt.Errorf("nats auth: sign the account %s: %w", ac.Name, err)
		}
		jwts[ac.Subject] = token
		return nil
	}
	ac := claims(a.account, AccountName)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	ac.Exports = exports()
	if err := add(ac); err != nil {
		return err
	}
	if err := add(claims(a.system, SystemAccountName)); err != nil {
		return err
	}
	for name, kp := range a.others {
		oc := claims(kp, name)
		for _, im := range a.roles[name].imports {
			im := *im
			im.Account = pc
			oc.Imports.Add(&im)
		}
		if err := add(oc); err != nil {
			return err
		}
	}
	a.jwts = jwts
	if a.resolver != nil {
		for pub, token := range jwts {
			_ = a.resolver.Store(pub, token)
		}
	}
	return nil
}

// accountFor is the key of r's account, creating the account (a region's first
// data-plane user) when needed.
func (a *Authority) accountFor(r Role) (nkeys.KeyPair, error) {
	if r.account == AccountName {
		return a.account, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if kp, ok := a.others[r.account]; ok {
		return kp, nil
	}
	if err := a.loadAccount(r); err != nil {
		return nil, err
	}
	if err := a.sign(); err != nil {
		return nil, err
	}
	return a.others[r.account], nil
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
	signer, err := a.accountFor(r)
	if err != nil {
		return nil, err
	}
	uc := jwt.NewUserClaims(pub)
	uc.Name = r.Name
	uc.Permissions = r.Permissions
	if r.account != AccountName {
		uc.Tags.Add(JSAPIPrefixTag + JSAPIPrefix)
	}
	token, err := uc.Encode(signer)
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
			if uc, err := jwt.DecodeUserClaims(token); err == nil {
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

// Configure makes an embedded server trust the operator and resolve every account
// from memory, including those created later (a region's first credentials).
func (a *Authority) Configure(opts *server.Options) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.resolver = &server.MemAccResolver{}
	for pub, token := range a.jwts {
		_ = a.resolver.Store(pub, token)
	}
	opts.TrustedOperators = []*jwt.OperatorClaims{a.operatorClaims}
	opts.AccountResolver = a.resolver
	opts.SystemAccount = a.operatorClaims.SystemAccount
}

// WriteServerConfig writes accounts.conf to the authority's directory: the part of
// a nats-server configuration that trusts the operator and preloads the accounts
// (deploy/nats/nats-server.conf includes it). It holds JWTs only, no secret.
func (a *Authority) WriteServerConfig() error {
	opJWT := a.operatorJWT
	a.mu.Lock()
	preload := maps.Clone(a.jwts)
	a.mu.Unlock()
	pubs := make([]string, 0, len(preload))
	for pub := range preload {
		pubs = append(pubs, pub)
	}
	sort.Strings(pubs)
	var b strings.Builder
	b.WriteString("# Written by `controlplane nats-auth`: the Portcullis operator, its system account,\n")
	b.WriteString("# PORTCULLIS, OPS and one DP_<REGION> account per region, with their revocations.\n")
	b.WriteString("# Users authenticate with credentials their account signs.\n")
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
