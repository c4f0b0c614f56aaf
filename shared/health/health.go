// Package health defines the health report each data-plane worker publishes on NATS
// (subject natsnames.HealthSubject) so that the control plane can show the state of
// every deployment as each worker sees it: its circuit breaker and its recent error
// rate. Reports are core NATS messages, not persisted: a report older than a few
// intervals means the worker is gone.
package health

import (
	"encoding/json"
	"fmt"
	"time"
)

// SchemaVersion is the report schema this build reads and writes. A reader rejects
// any other version.
const SchemaVersion = 1

// Interval is how often a worker publishes its report.
const Interval = 5 * time.Second

// Report is one worker's view of every deployment in its policy.
type Report struct {
	Version       int          `json:"version"`
	Worker        string       `json:"worker"`
	Region        string       `json:"region"`
	At            time.Time    `json:"at"`
	PolicyVersion int64        `json:"policy_version"`
	Deployments   []Deployment `json:"deployments"`
}

// Deployment is one deployment's health as a worker sees it.
type Deployment struct {
	Name string `json:"name"`
	// Breaker is "closed", "half-open" or "open"; "unusable" for a deployment
	// whose settings could not be built.
	Breaker string `json:"breaker"`
	// ErrorRate is the share of failed attempts over the worker's fallback window,
	// out of Samples attempts.
	ErrorRate float64 `json:"error_rate"`
	Samples   int     `json:"samples"`
	// LatencyMS is the worker's recent time to an answer's headers from the
	// deployment (a moving average, which load balancing prefers low); 0 before the
	// first answer.
	LatencyMS float64 `json:"latency_ms"`
}

// Encode renders r as JSON with the current schema version.
func Encode(r Report) ([]byte, error) {
	r.Version = SchemaVersion
	return json.Marshal(r)
}

// Decode parses a report, rejecting an unknown schema version.
func Decode(data []byte) (Report, error) {
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return Report{}, fmt.Errorf("health report: %w", err)
	}
	if r.Version != SchemaVersion {
		return Report{}, fmt.Errorf("health report: schema version %d, this build reads %d", r.Version, SchemaVersion)
	}
	if r.Worker == "" {
		return Report{}, fmt.Errorf("health report: no worker")
	}
	return r, nil
}
