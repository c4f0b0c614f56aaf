package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/google/pprof/profile"
)

// A stage is a part of the request path the profile breakdown reports. Each sample
// of a profile is charged to the stage of the innermost frame of its stack that a
// rule names; a sample no rule names is charged to stageOther.
type stage string

// The stages, in the order the report lists them.
const (
	stageHTTPServer stage = "HTTP server: read request, write answer"
	stageRouter     stage = "echo router and middleware"
	stageAuth       stage = "auth (JWT)"
	stageDecode     stage = "decode request"
	stageLimits     stage = "limits"
	stageRouting    stage = "routing"
	stageGuardrails stage = "guardrails"
	stageKeys       stage = "upstream key"
	stageUpstream   stage = "upstream client"
	stageRelay      stage = "relay and usage count"
	stageAuditBuild stage = "audit event build"
	stageHMAC       stage = "HMAC"
	stageAuditSink  stage = "audit sink line"
	stageSpool      stage = "spool write and fsync"
	stageNATS       stage = "NATS publish and cursor"
	stageAccessLog  stage = "access log"
	stageMetrics    stage = "metrics"
	stageGC         stage = "GC"
	stageScheduler  stage = "scheduler and idle"
	stageOther      stage = "other"
	stageTotal      stage = "total"
)

// Package prefixes of the rules.
const (
	apiPkg   = "portcullis/dataplane/internal/api."
	auditPkg = "portcullis/dataplane/internal/audit."
)

var stageOrder = []stage{
	stageHTTPServer, stageRouter, stageAuth, stageDecode, stageLimits, stageRouting, stageGuardrails,
	stageKeys, stageUpstream, stageRelay, stageAuditBuild, stageHMAC, stageAuditSink, stageSpool, stageNATS,
	stageAccessLog, stageMetrics, stageGC, stageScheduler, stageOther,
}

// stageRule charges a frame whose function name contains Match to Stage.
type stageRule struct {
	Match string
	Stage stage
}

// stageRules are tried on each frame from the innermost out; the first frame a rule
// matches decides the sample's stage. The more specific rules come first within a
// frame (a frame matches at most one rule: the first).
var stageRules = []stageRule{
	// The audit path, innermost first: HMAC inside the event build, the spool's
	// write and fsync, the sink, the relay to NATS.
	{"crypto/hmac.", stageHMAC},
	{auditPkg + "(*spool)", stageSpool},
	{auditPkg + "syncDir", stageSpool},
	{auditPkg + "(*Publisher).writeSink", stageAuditSink},
	{auditPkg + "(*Publisher).Run", stageNATS},
	{auditPkg + "(*Publisher).saveCursor", stageNATS},
	{auditPkg + "(*Publisher).relay", stageNATS},
	{"github.com/nats-io/nats.go", stageNATS},
	{auditPkg + "(*Publisher).Publish", stageAuditBuild},
	{"portcullis/shared/audit.", stageAuditBuild},
	{apiPkg + "(*server).audit", stageAuditBuild},
	{apiPkg + "(*server).promptHash", stageAuditBuild},
	{"portcullis/dataplane/app.(*asyncAudit)", stageAuditBuild},
	// The request's stages.
	{"portcullis/dataplane/internal/auth.", stageAuth},
	{apiPkg + "(*server).authenticate", stageAuth},
	{apiPkg + "decodeRequest", stageDecode},
	{apiPkg + "readBody", stageDecode},
	{"portcullis/dataplane/internal/limits.", stageLimits},
	{apiPkg + "(*server).admit", stageLimits},
	{"portcullis/dataplane/internal/router.", stageRouting},
	{apiPkg + "(*server).healthyRoutes", stageRouting},
	{"portcullis/dataplane/internal/policycache.", stageRouting},
	{"portcullis/shared/guardrails", stageGuardrails},
	{apiPkg + "(*guarded)", stageGuardrails},
	{apiPkg + "newGuarded", stageGuardrails},
	{"portcullis/dataplane/internal/keys.", stageKeys},
	{"portcullis/dataplane/internal/upstream.", stageUpstream},
	{"net/http.(*Transport)", stageUpstream},
	{"net/http.(*persistConn)", stageUpstream},
	{"net/http.persistConnWriter", stageUpstream},
	{"net/http.(*Client)", stageUpstream},
	{"net/http.send", stageUpstream},
	{"net/http.(*bodyEOFSignal)", stageRelay},
	{"portcullis/dataplane/internal/usage.", stageRelay},
	{apiPkg + "(*passthrough)", stageRelay},
	{apiPkg + "copyAnswer", stageRelay},
	{apiPkg + "(*server).attempt", stageUpstream},
	{"log/slog.", stageAccessLog},
	{"portcullis/shared/logging.", stageAccessLog},
	{apiPkg + "(*server).logAccess", stageAccessLog},
	{"github.com/prometheus/", stageMetrics},
	{"portcullis/shared/httpmetrics.", stageMetrics},
	{"github.com/labstack/echo", stageRouter},
	{apiPkg + "(*server).observe", stageRouter},
	{"net/http.(*conn)", stageHTTPServer},
	{"net/http.(*response)", stageHTTPServer},
	{"net/http.(*chunkWriter)", stageHTTPServer},
	{"net/http.(*connReader)", stageHTTPServer},
	{"net/http.serverHandler", stageHTTPServer},
	{"net/http.(*Server)", stageHTTPServer},
	{"runtime.gcBgMarkWorker", stageGC},
	{"runtime.bgsweep", stageGC},
	{"runtime.bgscavenge", stageGC},
	{"runtime.gcStart", stageGC},
	{"runtime.mcall", stageScheduler},
	{"runtime.schedule", stageScheduler},
	{"runtime.findRunnable", stageScheduler},
	{"runtime.sysmon", stageScheduler},
	{"runtime.mstart", stageScheduler},
}

// stageOf is the stage of one stack, innermost frame first.
func stageOf(locs []*profile.Location) stage {
	for _, loc := range locs {
		// A location's lines are its inlined calls, innermost first.
		for _, line := range loc.Line {
			if line.Function == nil {
				continue
			}
			name := line.Function.Name
			for _, r := range stageRules {
				if strings.Contains(name, r.Match) {
					return r.Stage
				}
			}
		}
	}
	return stageOther
}

// breakdown is a profile's samples summed by stage, in the profile's unit for
// sampleIndex (CPU nanoseconds, allocated objects or bytes).
type breakdown map[stage]int64

// breakdownOf sums p's sample values of the type named valueType by stage.
func breakdownOf(p *profile.Profile, valueType string) (breakdown, error) {
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == valueType {
			idx = i
		}
	}
	if idx < 0 {
		types := make([]string, 0, len(p.SampleType))
		for _, st := range p.SampleType {
			types = append(types, st.Type)
		}
		return nil, fmt.Errorf("profile has no %q values (it has %s)", valueType, strings.Join(types, ", "))
	}
	b := breakdown{}
	for _, s := range p.Sample {
		v := s.Value[idx]
		b[stageOf(s.Location)] += v
		b[stageTotal] += v
	}
	return b, nil
}

// perRequest divides every stage's value by n requests.
func (b breakdown) perRequest(n int64) map[stage]float64 {
	out := make(map[stage]float64, len(b))
	if n <= 0 {
		return out
	}
	for s, v := range b {
		out[s] = float64(v) / float64(n)
	}
	return out
}

// stagesPresent is stageOrder restricted to the stages with a value in any of ms,
// then stageTotal.
func stagesPresent(ms ...map[stage]float64) []stage {
	var out []stage
	for _, s := range stageOrder {
		if slices.ContainsFunc(ms, func(m map[stage]float64) bool { return m[s] != 0 }) {
			out = append(out, s)
		}
	}
	return append(out, stageTotal)
}

// profileSummary is one target's profile, per request and by stage: what the report
// shows, and what -profile-save keeps for a later run to compare against.
type profileSummary struct {
	Target string `json:"target"`
	Commit string `json:"commit"`
	Date   string `json:"date"`
	// Requests answered in the CPU and the allocation windows.
	CPURequests   int64 `json:"cpu_requests"`
	AllocRequests int64 `json:"alloc_requests"`
	// Per request, by stage: CPU microseconds, bytes and objects allocated.
	CPUMicros    map[stage]float64 `json:"cpu_us"`
	AllocBytes   map[stage]float64 `json:"alloc_bytes"`
	AllocObjects map[stage]float64 `json:"alloc_objects"`
}

// summarize reads p's profiles per request and by stage.
func summarize(p targetProfile, m machine) (profileSummary, error) {
	s := profileSummary{Target: p.Target, Commit: m.Commit, Date: m.Date.Format("2006-01-02"),
		CPURequests: p.CPURequests, AllocRequests: p.AllocRequests}
	cpu, err := breakdownOf(p.CPU, "cpu")
	if err != nil {
		return s, fmt.Errorf("CPU profile of %s: %w", p.Target, err)
	}
	bytes, err := breakdownOf(p.Allocs, "alloc_space")
	if err != nil {
		return s, fmt.Errorf("allocation profile of %s: %w", p.Target, err)
	}
	objects, err := breakdownOf(p.Allocs, "alloc_objects")
	if err != nil {
		return s, fmt.Errorf("allocation profile of %s: %w", p.Target, err)
	}
	s.CPUMicros = cpu.perRequest(p.CPURequests)
	for k, v := range s.CPUMicros {
		s.CPUMicros[k] = v / 1000 // ns to µs
	}
	s.AllocBytes = bytes.perRequest(p.AllocRequests)
	s.AllocObjects = objects.perRequest(p.AllocRequests)
	return s, nil
}
