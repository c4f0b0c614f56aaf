// Package alerts holds the messages of the PC_ALERTS stream (docs/design.md §3): security
// and anomaly alerts, on subject alerts.<kind>.<subject>. The audit issue's anomaly
// detector adds its kinds; key custody raises key_revoked and key_rotation_due; the
// control plane's health collector raises policy_lag.
package alerts

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// SchemaVersion is the version of every alert this package encodes.
const SchemaVersion = 1

// Kinds.
const (
	KindKeyRevoked     = "key_revoked"      // an emergency key revocation
	KindKeyRotationDue = "key_rotation_due" // a scheduled rotation needs an operator's new key
	KindKeyRotationErr = "key_rotation_failed"
	KindPolicyLag      = "policy_lag" // a worker's policy version lags the published one
)

// Severities.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
	SeverityInfo     = "info" // worth knowing; nothing was done
)

// Alert is one alert. Subject is what it is about: a client id, or for key alerts
// the provider. Details never hold key material, tokens or prompts.
type Alert struct {
	Version  int            `json:"version"`
	ID       string         `json:"id"`
	Kind     string         `json:"kind"`
	Severity string         `json:"severity"`
	Subject  string         `json:"subject"`
	Message  string         `json:"message"`
	Details  map[string]any `json:"details,omitempty"`
	At       time.Time      `json:"at"`
}

// Encode marshals a with the current schema version.
func Encode(a Alert) ([]byte, error) {
	a.Version = SchemaVersion
	return json.Marshal(a)
}

// Decode parses an alert, rejecting an unknown schema version or one without a kind.
func Decode(data []byte) (Alert, error) {
	var a Alert
	if err := json.Unmarshal(data, &a); err != nil {
		return Alert{}, fmt.Errorf("alert: %w", err)
	}
	if a.Version != SchemaVersion {
		return Alert{}, fmt.Errorf("alert: schema version %d, this build reads %d", a.Version, SchemaVersion)
	}
	if a.Kind == "" {
		return Alert{}, errors.New("alert: no kind")
	}
	return a, nil
}
