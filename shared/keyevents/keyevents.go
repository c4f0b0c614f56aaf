// Package keyevents holds the messages of the PC_KEYS stream (docs/design.md §3, §6):
// key rotations and revocations, which the control plane announces and data planes
// follow, and key-access events, one per read of a key from Vault by any worker or
// control plane. None of them ever carries key material.
package keyevents

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// SchemaVersion is the version of every message this package encodes. A reader
// rejects any other.
const SchemaVersion = 1

// Event kinds.
const (
	// KindRotated: a new key version is current; the previous one stays valid until
	// OverlapUntil.
	KindRotated = "rotated"
	// KindRevoked: a new key version is current (or none, if none could be minted)
	// and every older one must never be used again.
	KindRevoked = "revoked"
)

// Event announces a rotation or a revocation of one deployment's key.
type Event struct {
	Version int `json:"version"`
	// ID is the rotation's id in the control plane's history.
	ID         string `json:"id"`
	Kind       string `json:"kind"`
	Provider   string `json:"provider"`
	Deployment string `json:"deployment"`
	// Path is the deployment's key path; KeyVersion its new current version (KV v2;
	// 0 for a dynamic secret, which data planes simply read again) and
	// PreviousVersion the one it replaces.
	Path            string `json:"path"`
	KeyVersion      int    `json:"key_version"`
	PreviousVersion int    `json:"previous_version"`
	// OverlapUntil is when the previous key stops being valid; zero for a revocation.
	OverlapUntil time.Time `json:"overlap_until,omitzero"`
	Reason       string    `json:"reason,omitempty"`
	At           time.Time `json:"at"`
}

// Actor kinds of an Access.
const (
	ActorWorker       = "worker"
	ActorControlPlane = "controlplane"
)

// Reasons of an Access: why the key was read.
const (
	ReasonStartup    = "startup"    // first read of a deployment's key
	ReasonRotation   = "rotation"   // a rotation event, or a new version found
	ReasonRevocation = "revocation" // a revocation event
	ReasonRenewal    = "renewal"    // a dynamic secret re-read before its lease ends
	ReasonRefresh    = "refresh"    // the periodic metadata check
	ReasonRetry401   = "retry_401"  // the upstream refused the current key
	ReasonMint       = "mint"       // the rotator read a key to rotate it
	ReasonAdminKey   = "admin_key"  // the rotator read a provider admin key
)

// Access records one read of a key from Vault: who, which path and version, why, and
// whether it worked. Never the value.
type Access struct {
	Version int `json:"version"`
	// ID is unique per actor and read (actor id and a sequence), so a redelivered
	// event is stored once.
	ID         string    `json:"id"`
	At         time.Time `json:"at"`
	ActorKind  string    `json:"actor_kind"`
	ActorID    string    `json:"actor_id"`
	Region     string    `json:"region,omitempty"`
	Deployment string    `json:"deployment,omitempty"`
	Path       string    `json:"path"`
	KeyVersion int       `json:"key_version,omitempty"`
	Reason     string    `json:"reason"`
	OK         bool      `json:"ok"`
	// Error says why a failed read failed; it never holds a key or a token.
	Error string `json:"error,omitempty"`
}

// Encode marshals an Event or an Access with the current schema version.
func Encode[T Event | Access](m T) ([]byte, error) {
	switch v := any(&m).(type) {
	case *Event:
		v.Version = SchemaVersion
	case *Access:
		v.Version = SchemaVersion
	}
	return json.Marshal(m)
}

// DecodeEvent parses an Event, rejecting an unknown schema version or a message that
// names no deployment or an unknown kind.
func DecodeEvent(data []byte) (Event, error) {
	var e Event
	if err := decode(data, &e, &e.Version); err != nil {
		return Event{}, err
	}
	switch {
	case e.Kind != KindRotated && e.Kind != KindRevoked:
		return Event{}, fmt.Errorf("key event: unknown kind %q", e.Kind)
	case e.Deployment == "":
		return Event{}, errors.New("key event: no deployment")
	}
	return e, nil
}

// DecodeAccess parses an Access, rejecting an unknown schema version or one without
// an id or actor.
func DecodeAccess(data []byte) (Access, error) {
	var a Access
	if err := decode(data, &a, &a.Version); err != nil {
		return Access{}, err
	}
	switch {
	case a.ID == "":
		return Access{}, errors.New("key access event: no id")
	case a.ActorKind != ActorWorker && a.ActorKind != ActorControlPlane:
		return Access{}, fmt.Errorf("key access event: unknown actor kind %q", a.ActorKind)
	case a.ActorID == "":
		return Access{}, errors.New("key access event: no actor id")
	}
	return a, nil
}

func decode(data []byte, v any, version *int) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("key event: %w", err)
	}
	if *version != SchemaVersion {
		return fmt.Errorf("key event: schema version %d, this build reads %d", *version, SchemaVersion)
	}
	return nil
}
