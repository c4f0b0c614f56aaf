// Package audit holds the audit event (docs/design.md §7): one per request, rejected ones
// included, published by data planes on PC_AUDIT_<REGION> (subject
// audit.<region>.<client>, Nats-Msg-Id = request id), archived per region by the
// control plane. It carries metadata and keyed hashes, never a prompt, a response, an
// Authorization header, a JWT or a key.
package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// SchemaVersion is the version of the events this package encodes; a reader rejects
// any other.
const SchemaVersion = 1

// HashPrefix starts every prompt and response hash.
const HashPrefix = "hmac-sha256:"

// DefaultHeaders is the default allowlist of request headers an event records.
// (The client's X-Request-Id is the event's ClientRequestID.)
var DefaultHeaders = []string{"x-client-id", "content-type"}

// Event is one request's audit record.
type Event struct {
	V  int       `json:"v"`
	TS time.Time `json:"ts"`
	// RequestID is the gateway's own id of the request: the event's only dedupe
	// key (Nats-Msg-Id, and the archive's per-region key).
	RequestID string `json:"request_id"`
	// ClientRequestID is the client's X-Request-Id, when it was sane
	// (^[A-Za-z0-9._:-]{1,128}$): for correlation only, never a key.
	ClientRequestID string `json:"client_request_id,omitempty"`
	Region          string `json:"region"`
	Worker          string `json:"worker"`
	// ClientID and TenantID are empty for a request that never authenticated.
	ClientID   string `json:"client_id"`
	TenantID   string `json:"tenant_id"`
	Operation  string `json:"operation"`
	Model      string `json:"model"`
	Provider   string `json:"provider"`
	Deployment string `json:"deployment"`
	// KeyVersion is the version of the provider key the answer was got with (0: none,
	// or a key source without versions).
	KeyVersion int `json:"key_version"`
	// PromptHash and ResponseHash are HMAC-SHA-256 under the audit key, as
	// HashPrefix + hex; empty when there was no prompt or response.
	PromptHash        string `json:"prompt_hash"`
	ResponseHash      string `json:"response_hash"`
	TokensIn          int64  `json:"tokens_in"`
	TokensOut         int64  `json:"tokens_out"`
	CostUSDMicros     int64  `json:"cost_usd_micros"`
	LatencyMS         int64  `json:"latency_ms"`
	UpstreamLatencyMS int64  `json:"upstream_latency_ms"`
	Status            int    `json:"status"`
	// ErrorCode is the gateway's stable error code, nil on success.
	ErrorCode *string `json:"error_code"`
	Stream    bool    `json:"stream"`
	// Fallback is true when the answer came from the policy's fallback model, named
	// by FallbackModel, for FallbackReason: circuit_open or error_rate when the request
	// went there before any attempt, else the stable error code of the primary's last
	// failed attempt (upstream_error, upstream_timeout, rate_limit_exceeded, …).
	Fallback       bool   `json:"fallback"`
	FallbackModel  string `json:"fallback_model,omitempty"`
	FallbackReason string `json:"fallback_reason,omitempty"`
	// Flagged says a guardrail found something in the request or its answer, and
	// Flags what: each family, type, direction and action with its count, never the
	// text.
	Flagged bool   `json:"flagged"`
	Flags   []Flag `json:"flags"`
	// SourceNet is the network the request came from (an IPv4 /24 or IPv6 /48), not
	// the address: enough to notice a client calling from somewhere new.
	SourceNet string `json:"source_net,omitempty"`
	// Headers are the request headers on the allowlist, lower-cased.
	Headers map[string]string `json:"headers"`
}

// Flag counts one kind of guardrail finding of a request: its family (pii,
// secrets, injection), type (email, aws_key, instruction_override …), direction
// (input, output) and the action taken (flag, redact, block).
type Flag struct {
	Family    string `json:"family"`
	Type      string `json:"type"`
	Direction string `json:"direction"`
	Action    string `json:"action"`
	Count     int    `json:"count"`
}

// Encode marshals e with the current schema version.
func Encode(e Event) ([]byte, error) {
	e.V = SchemaVersion
	if e.Flags == nil {
		e.Flags = []Flag{}
	}
	if e.Headers == nil {
		e.Headers = map[string]string{}
	}
	return json.Marshal(e)
}

// Decode parses an event, rejecting an unknown schema version or one without a
// request id or region.
func Decode(data []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		return Event{}, fmt.Errorf("audit event: %w", err)
	}
	switch {
	case e.V != SchemaVersion:
		return Event{}, fmt.Errorf("audit event: schema version %d, this build reads %d", e.V, SchemaVersion)
	case e.RequestID == "":
		return Event{}, errors.New("audit event: no request id")
	case e.Region == "":
		return Event{}, errors.New("audit event: no region")
	}
	return e, nil
}

// Hash is the keyed hash of text under key, as HashPrefix + hex: equal texts can be
// correlated, but without the key a short text cannot be found by trying candidates.
func Hash(key []byte, text []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(text)
	return HashPrefix + hex.EncodeToString(m.Sum(nil))
}

// SourceNet returns the network of addr: its IPv4 /24 or IPv6 /48, or "" when addr
// is not an IP address.
func SourceNet(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return ""
	}
	ip = ip.Unmap()
	bits := 48
	if ip.Is4() {
		bits = 24
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.String()
}
