// Package natsnames holds every NATS JetStream bucket, stream, key and subject name
// that Portcullis uses. No other package spells these names out.
package natsnames

import (
	"encoding/base64"
	"strings"
)

const (
	// PolicyBucket is the KV bucket that carries the policy snapshot.
	PolicyBucket = "PC_POLICY"
	// PolicySnapshotKey is the key in PolicyBucket that holds the whole snapshot.
	PolicySnapshotKey = "snapshot"

	// LimitsBucket holds the global limit counters, updated by compare-and-swap.
	LimitsBucket = "PC_LIMITS"
	// LimitsRequestsPrefix, LimitsTokensPrefix and LimitsConcurrencyPrefix begin
	// LimitsBucket's keys: "rpm.<client>.<unix start of the UTC minute>" and
	// "tph.<client>.<unix start of the UTC hour>" hold the requests and tokens the
	// workers have leased in that window (a decimal count), "conc.<client>" the
	// concurrency slots each worker holds (JSON); <client> is LimitsClientKey.
	LimitsRequestsPrefix    = "rpm."
	LimitsTokensPrefix      = "tph."
	LimitsConcurrencyPrefix = "conc."
	// WorkersBucket holds one heartbeat key per live data-plane worker.
	WorkersBucket = "PC_WORKERS"

	// KeysStream carries key lifecycle events (never key material).
	KeysStream = "PC_KEYS"
	// AlertsStream carries anomaly and security alerts.
	AlertsStream = "PC_ALERTS"
	// CheckpointsStream carries the control plane's signed audit checkpoints. Its
	// name must not start with AuditStreamPrefix, or the audit ingest would take it
	// for a region's stream.
	CheckpointsStream = "PC_CHECKPOINTS"
)

// KVStream is the name of the JetStream stream that backs KV bucket.
func KVStream(bucket string) string { return "KV_" + bucket }

// KVSubject is the subject key of KV bucket is stored under.
func KVSubject(bucket, key string) string { return "$KV." + bucket + "." + key }

// KeysSubjects matches everything PC_KEYS holds.
const KeysSubjects = "keys.>"

// KeysLifecycleSubjects match rotations and revocations of every provider, which
// data planes follow.
var KeysLifecycleSubjects = []string{"keys.rotated.>", "keys.revoked.>"}

// KeysAccessSubject is the subject actor publishes its key-access events on, one per
// read of a key from Vault: scope is a data plane's region, or ControlPlaneScope for
// a control plane. The scope lets NATS permissions keep a region's data planes to
// their own subjects.
func KeysAccessSubject(scope, actor string) string {
	return "keys.access." + token(scope) + "." + token(actor)
}

// KeysAccessSubjectsOf matches the key-access subjects of every worker of region.
func KeysAccessSubjectsOf(region string) string { return "keys.access." + token(region) + ".*" }

// ControlPlaneScope is the scope of a control plane's key-access subject.
const ControlPlaneScope = "controlplane"

// KeysAccessConsumer is the durable consumer of PC_KEYS through which control planes
// store the key-access events; several control planes share it.
const KeysAccessConsumer = "portcullis-controlplane-key-access"

// KeysAccessSubjects matches every actor's key-access events.
const KeysAccessSubjects = "keys.access.>"

// AlertsSubjects matches everything PC_ALERTS holds.
const AlertsSubjects = "alerts.>"

// KeysRotatedSubject is the subject a key rotation for provider is announced on.
func KeysRotatedSubject(provider string) string { return "keys.rotated." + token(provider) }

// KeysRevokedSubject is the subject an emergency key revocation for provider is announced on.
func KeysRevokedSubject(provider string) string { return "keys.revoked." + token(provider) }

// AuditStreamPrefix starts the name of every region's audit stream.
const AuditStreamPrefix = "PC_AUDIT_"

// AuditStream is the name of the audit stream of region, e.g. PC_AUDIT_EU.
func AuditStream(region string) string { return AuditStreamPrefix + strings.ToUpper(token(region)) }

// AuditSubjects matches every client's audit subject in region: audit.<region>.>.
func AuditSubjects(region string) string { return "audit." + token(region) + ".>" }

// AuditSubject is the subject one audit event of client in region is published on.
func AuditSubject(region, client string) string {
	return "audit." + token(region) + "." + token(client)
}

// CheckpointsSubjects matches everything PC_CHECKPOINTS holds.
const CheckpointsSubjects = "checkpoints.>"

// AuditCheckpointSubject is the subject the signed checkpoints of region's audit
// chain are published on: checkpoints.audit.<region>. It is outside audit.>, which
// the regions' data planes publish on.
func AuditCheckpointSubject(region string) string { return "checkpoints.audit." + token(region) }

// HealthSubject is the subject worker of region publishes its health report on.
func HealthSubject(region, worker string) string {
	return "health." + token(region) + "." + token(worker)
}

// HealthSubjects matches every worker's health reports.
const HealthSubjects = "health.>"

// HealthSubjectsOf matches the health subjects of every worker of region.
func HealthSubjectsOf(region string) string { return "health." + token(region) + ".*" }

// AlertSubject is the subject an alert of kind about client is published on.
func AlertSubject(kind, client string) string { return "alerts." + token(kind) + "." + token(client) }

// AuditStreamCreateSubject is where a region's data planes ask the control plane to
// create the region's audit stream (they may not create streams themselves: a
// stream's settings can make the server publish or copy for them).
func AuditStreamCreateSubject(region string) string { return "streams.audit.create." + token(region) }

// AuditStreamCreateSubjects matches every region's AuditStreamCreateSubject.
const AuditStreamCreateSubjects = "streams.audit.create.*"

// InboxPrefix is the prefix of the reply subjects of the NATS user named user
// (natsconn sets it from the user's credentials), so that NATS permissions can let
// each identity read its own replies only.
func InboxPrefix(user string) string { return "_INBOX." + token(user) }

// Token is s as one subject token, the way every subject here writes a region,
// client or worker name.
func Token(s string) string { return token(s) }

// token makes s safe to use as one NATS subject token: wildcards, separators and
// whitespace become underscores, and an empty string becomes "_".
func token(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '*', '>', ' ', '\t', '\r', '\n':
			return '_'
		}
		return r
	}, s)
}

// LimitsClientKey makes a client id one token of a LimitsBucket key: ids of letters,
// digits, '-' and '_' are used as they are; any other is base64url-encoded behind
// '=', which no plain id contains.
func LimitsClientKey(id string) string {
	plain := id != ""
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			plain = false
			break
		}
	}
	if plain {
		return id
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(id))
}
