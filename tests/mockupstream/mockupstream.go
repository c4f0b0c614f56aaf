// Package mockupstream is a deterministic upstream for tests, the dev stack and the
// benchmark. It speaks OpenAI's wire protocol on POST /v1/chat/completions (plain and SSE
// streaming, honouring stream_options.include_usage), POST /v1/completions,
// POST /v1/embeddings and GET /v1/models, and Anthropic's Messages API on POST /v1/messages
// (plain and streaming, tool use included, errors in Anthropic's schema), records the
// requests it receives (see Request: the last DefaultRecordLimit unless
// Options.RecordLimit says otherwise, so that a long run stays small) and counts them
// all (RequestCount), counts the requests in flight (InFlight, MaxInFlight), and can be
// told to fail the way real providers do: 500, 429, 529, slow answers, hung requests,
// connection resets and streams cut midway (see Failure). Options can also hold every
// answer back (HoldDelay) and make the mock report no usage at all (NoUsage), as some
// self-hosted servers do.
//
// Like a provider, it checks keys: once a key is accepted (Options.RequireKey,
// AcceptKey, AcceptKeyUntil) a request without an accepted key gets 401 in its
// endpoint's schema, with the key masked as OpenAI masks it, never echoed whole. A key
// can be accepted only until a moment, as during a rotation's overlap, and revoked
// (RevokeKey). Each recorded request names its key by Fingerprint only. With an admin
// key (Options.AdminKey, SetAdminKey) it also serves the part of OpenAI's organization
// admin API that mints and deletes keys: creating a project service account mints a
// key the mock accepts at once, and deleting the account revokes it.
//
// One mock can stand in for several deployments: a path /d/<name>/v1/... is served as
// /v1/... for deployment <name>, so each deployment's base URL is <mock>/d/<name>. A
// failure can then be injected into one deployment's requests only, for a while (see
// SetDeploymentFailure).
//
// Model answers depend only on the request, so tests can assert them exactly:
//   - a chat reply, and the text of a /v1/messages answer, is
//     "mock reply from <Name> to <N> messages";
//   - a completion is "mock completion from <Name> for <W> words" per prompt;
//   - an embedding is an 8-dimensional unit vector derived from the SHA-256 of its input;
//   - a token is a whitespace-separated word. A chat's prompt tokens are the words of every
//     message's text plus one per message; completion tokens are the words of the reply
//     (cut to max_tokens or max_completion_tokens when smaller, with finish_reason "length").
//     A /v1/messages request's input tokens are the words of its system prompt and of every
//     message's text plus one per message; its output tokens are the words of the reply,
//     cut to max_tokens with stop_reason "max_tokens".
//   - a /v1/messages request with tools answers with a tool_use block instead of text
//     when its last message contains "weather" (see ToolTrigger).
package mockupstream

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"
)

// Defaults for Options.
const (
	DefaultName      = "mock"
	DefaultSlowDelay = 10 * time.Second
	// DefaultRecordLimit is how many requests' records a Server keeps unless
	// Options.RecordLimit says otherwise.
	DefaultRecordLimit = 1024
)

// RecordAll, as Options.RecordLimit, keeps the record of every request.
const RecordAll = -1

// DefaultModels are the model ids GET /v1/models lists unless Options.Models is set. Every
// endpoint accepts any model name, listed or not.
var DefaultModels = []string{"gpt-4o", "gpt-4o-mini", "text-embedding-3-small"}

// maxBodyBytes bounds a request body; larger bodies get 413.
const maxBodyBytes = 16 << 20

// Options configures a Server. The zero value is usable.
type Options struct {
	// Name appears in replies and as the models' owner, so a test can tell which upstream
	// answered. Defaults to DefaultName.
	Name string
	// RequireKey, when set, is the first accepted key (see AcceptKey): every model
	// request must then carry an accepted key, as "Authorization: Bearer <key>", except
	// on /v1/messages, which (like Anthropic) requires "x-api-key: <key>" and ignores
	// Authorization. Others get 401 in their endpoint's schema.
	RequireKey string
	// AdminKey, when set, turns on the subset of OpenAI's organization admin API that
	// mints and deletes keys (project service accounts, under /v1/organization/),
	// authenticated with "Authorization: Bearer <AdminKey>". Without it that API
	// answers 404. See also SetAdminKey.
	AdminKey string
	// SlowDelay is how long FailSlow waits before answering. Defaults to DefaultSlowDelay.
	SlowDelay time.Duration
	// ChunkDelay is a pause before every streamed chunk after the first. Zero means none.
	ChunkDelay time.Duration
	// Models are the ids GET /v1/models lists. Defaults to DefaultModels.
	Models []string
	// NoUsage makes the mock report no usage: answers have no "usage" member and streams
	// send no usage chunk, even when stream_options.include_usage is true.
	NoUsage bool
	// HoldDelay holds every request (after recording it, before checking anything else)
	// this long, or until the client goes away. Zero means none. It adds to FailSlow's
	// SlowDelay.
	HoldDelay time.Duration
	// RecordLimit is how many records Requests keeps: those of the last RecordLimit
	// requests, in a ring, so that a long run (a benchmark, the dev stack) keeps its
	// memory bounded. Zero means DefaultRecordLimit; RecordAll (any negative value)
	// keeps every record, for a test that looks at every request of a long run.
	// RequestCount counts every request either way.
	RecordLimit int
}

// Request is what the Server recorded about one request it received.
type Request struct {
	// At is when the mock received the request (before Options.HoldDelay).
	At     time.Time
	Method string
	// Path is the path served: for /d/<name>/v1/models it is /v1/models.
	Path string
	// Deployment is the <name> of a /d/<name>/ path, "" for a path without one.
	Deployment string
	Model      string // the body's "model", "" if absent or unparsable
	Stream     bool   // the body's "stream"
	// HadAuth reports whether the request carried an Authorization header at all.
	HadAuth bool
	// HadAPIKey reports whether the request carried an x-api-key header at all.
	HadAPIKey bool
	// KeyFingerprint is Fingerprint of the key the request carried (x-api-key on
	// /v1/messages, the Bearer token elsewhere), "" for none. The key itself is never
	// recorded.
	KeyFingerprint string
	// Header is a copy of the request headers with Authorization and X-Api-Key removed.
	Header http.Header
	// StreamOptions is the body's "stream_options" as it was sent, nil if absent.
	StreamOptions json.RawMessage
	// MaxTokens is the body's "max_tokens" or "max_completion_tokens", the smaller when it
	// has both, and nil when it has neither (or they are not integers).
	MaxTokens *int
	// Texts are the request's texts as the upstream got them: the system prompt and
	// each message's content (text parts and tool results joined), or the prompt. A
	// test mock keeps them so that a test can see what left the gateway.
	Texts []string
}

// Server is the mock upstream. It is an http.Handler; serve it with httptest.NewServer or
// an http.Server. It is safe for concurrent use.
type Server struct {
	opts Options
	keys keySet // the accepted keys

	mu                 sync.Mutex // guards the fields below
	requests           []Request  // the records kept; a ring once it holds Options.RecordLimit
	oldest             int        // the index of the oldest record once the ring is full
	recorded           int        // the requests recorded since New or Reset, kept or not
	failure            Failure
	deploymentFailures map[string]DeploymentFailure // by deployment; expired ones pruned lazily
	inFlight           int
	maxInFlight        int
	adminKey           string                     // "" turns the admin API off
	accounts           map[string]*serviceAccount // the admin API's, by id
	accountSeq         int                        // the last account's serviceAccount.seq

	closeOnce sync.Once
	closed    chan struct{} // closed by Close: hung requests drop their connections
}

var _ http.Handler = (*Server)(nil)

// New returns a Server configured by o.
func New(o Options) *Server {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.SlowDelay <= 0 {
		o.SlowDelay = DefaultSlowDelay
	}
	if len(o.Models) == 0 {
		o.Models = DefaultModels
	}
	if o.RecordLimit == 0 {
		o.RecordLimit = DefaultRecordLimit
	}
	s := &Server{opts: o, closed: make(chan struct{}), adminKey: o.AdminKey}
	s.AcceptKey(o.RequireKey)
	return s
}

// Close releases every request FailHang holds, each dropping its connection, and
// makes later FailHang requests drop theirs at once. Pass it to
// http.Server.RegisterOnShutdown so that a graceful shutdown does not wait for hung
// requests. It is idempotent; the Server keeps answering other requests.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closed) })
}

// Requests returns a copy of the records of the requests received since New or the last
// Reset, oldest first: all of them, or the last Options.RecordLimit (see
// RequestCount for how many there were).
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, 0, len(s.requests))
	out = append(out, s.requests[s.oldest:]...)
	return append(out, s.requests[:s.oldest]...)
}

// RequestCount returns how many requests were recorded since New or the last Reset,
// including those whose records Options.RecordLimit let go. Requests to the admin API
// are not recorded, nor counted.
func (s *Server) RequestCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recorded
}

// keepLocked keeps rec, in place of the oldest record once Options.RecordLimit are
// kept.
func (s *Server) keepLocked(rec Request) {
	s.recorded++
	if limit := s.opts.RecordLimit; limit > 0 && len(s.requests) == limit {
		s.requests[s.oldest] = rec
		s.oldest = (s.oldest + 1) % limit
		return
	}
	s.requests = append(s.requests, rec)
}

// Reset forgets the recorded requests and their count (RequestCount), clears every
// failure (SetFailure's and the deployments') and restarts MaxInFlight from the number
// of requests in flight now (zero when the mock is idle). The accepted keys, the admin
// key and the service accounts stay.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests, s.oldest, s.recorded = nil, 0, 0
	s.failure = FailNone
	s.deploymentFailures = nil
	s.maxInFlight = s.inFlight
}

// InFlight returns the number of requests being handled now: each counts from the
// moment its handler starts until it returns, whatever the endpoint or the outcome.
func (s *Server) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}

// MaxInFlight returns the highest InFlight since New or the last Reset.
func (s *Server) MaxInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxInFlight
}

func (s *Server) enter() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
}

func (s *Server) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight--
}

// SetFailure makes every following request fail as f describes, until the next
// SetFailure or Reset, except the requests of a deployment with a failure of its own
// (see SetDeploymentFailure).
func (s *Server) SetFailure(f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failure = f
}

// record records the request r for deployment, in dialect d, and returns the failure
// in force for it.
func (s *Server) record(r *http.Request, deployment string, d dialect, body []byte) Failure {
	var probe struct {
		Model               string          `json:"model"`
		Stream              bool            `json:"stream"`
		StreamOptions       json.RawMessage `json:"stream_options"`
		MaxTokens           json.RawMessage `json:"max_tokens"`
		MaxCompletionTokens json.RawMessage `json:"max_completion_tokens"`
		System              json.RawMessage `json:"system"`
		Messages            []struct {
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		Prompt json.RawMessage `json:"prompt"`
	}
	_ = json.Unmarshal(body, &probe) // best effort: a bad body is still recorded
	h := r.Header.Clone()
	h.Del("Authorization")
	h.Del("X-Api-Key")
	key, _ := requestKey(r.Header, d)
	now := time.Now()
	rec := Request{
		At:             now,
		Method:         r.Method,
		Path:           r.URL.Path,
		Deployment:     deployment,
		Model:          probe.Model,
		Stream:         probe.Stream,
		HadAuth:        r.Header.Get("Authorization") != "",
		HadAPIKey:      r.Header.Get("X-Api-Key") != "",
		KeyFingerprint: Fingerprint(key),
		Header:         h,
		StreamOptions:  probe.StreamOptions,
		MaxTokens:      intValue(probe.MaxTokens),
	}
	for _, raw := range append([]json.RawMessage{probe.System, probe.Prompt}, messageContents(probe.Messages)...) {
		if t := blocksText(raw); t != "" {
			rec.Texts = append(rec.Texts, t)
		}
	}
	if m := intValue(probe.MaxCompletionTokens); m != nil && (rec.MaxTokens == nil || *m < *rec.MaxTokens) {
		rec.MaxTokens = m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keepLocked(rec)
	return s.failureForLocked(deployment, now)
}

// intValue returns the JSON integer raw, or nil when raw is absent, null or not an
// integer.
func intValue(raw json.RawMessage) *int {
	var n int
	if len(raw) == 0 || string(raw) == "null" || json.Unmarshal(raw, &n) != nil {
		return nil
	}
	return &n
}

// endpoint answers one route. body is the whole request body; fail is the failure in
// force, of which endpoints only act on FailCutStream (the others are handled before).
type endpoint func(w http.ResponseWriter, r *http.Request, body []byte, fail Failure) error

func (s *Server) route(r *http.Request) (endpoint, error) {
	var method string
	var ep endpoint
	switch r.URL.Path {
	case "/v1/chat/completions":
		method, ep = http.MethodPost, s.chat
	case "/v1/completions":
		method, ep = http.MethodPost, s.completions
	case "/v1/embeddings":
		method, ep = http.MethodPost, s.embeddings
	case "/v1/models":
		method, ep = http.MethodGet, s.models
	case messagesPath:
		method, ep = http.MethodPost, s.messages
	default:
		return nil, errNotFound(r)
	}
	if r.Method != method {
		return nil, errMethod(r)
	}
	return ep, nil
}

// dialect is the wire protocol an endpoint speaks, which decides its error schema.
type dialect int

const (
	openAIDialect dialect = iota
	anthropicDialect
)

func dialectOf(r *http.Request) dialect {
	if r.URL.Path == messagesPath {
		return anthropicDialect
	}
	return openAIDialect
}

// ServeHTTP serves a /d/<name>/ path as the rest of it for deployment <name>. It
// records the request, holds it for Options.HoldDelay, then checks the route, the
// headers (key, and anthropic-version on /v1/messages) and the injected failure, in
// that order, before answering. Errors on /v1/messages are in Anthropic's schema, the
// others in OpenAI's. The admin API (paths under /v1/organization/) is served apart:
// it is counted in InFlight, but neither recorded nor held, and injected failures do
// not apply to it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.enter()
	defer s.leave() // deferred, so that a handler aborted by a panic is counted out too
	deployment, path := splitDeployment(r.URL.Path)
	if deployment != "" {
		r = withPath(r, path)
	}
	d := dialectOf(r)
	if err := s.serve(w, r, deployment, d); err != nil {
		if d == anthropicDialect {
			writeAnthropicError(w, err)
			return
		}
		writeError(w, err)
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, deployment string, d dialect) error {
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if isAdminPath(r.URL.Path) {
		if readErr != nil {
			return errTooLarge(readErr)
		}
		return s.admin(w, r, body)
	}
	fail := s.record(r, deployment, d, body)
	if err := s.hold(r); err != nil {
		return err
	}
	if readErr != nil {
		return errTooLarge(readErr)
	}
	ep, err := s.route(r)
	if err != nil {
		return err
	}
	if err := s.checkHeaders(r, d); err != nil {
		return err
	}
	if err := s.inject(w, r, fail, d); err != nil {
		return err
	}
	return ep(w, r, body, fail)
}

// checkHeaders checks the key (see AcceptKey) and, on /v1/messages, the
// anthropic-version header.
func (s *Server) checkHeaders(r *http.Request, d dialect) error {
	key, hasKey := requestKey(r.Header, d)
	allowed := s.keys.allows(key, time.Now())
	if d == openAIDialect {
		switch {
		case allowed:
			return nil
		case !hasKey:
			return errNoKey()
		default:
			return errBadKey(key)
		}
	}
	switch {
	case allowed:
	case !hasKey:
		return errAnthropicAuth("x-api-key header is required")
	default:
		return errAnthropicAuth("invalid x-api-key")
	}
	if r.Header.Get("Anthropic-Version") == "" {
		return errAnthropicInvalid("anthropic-version: header is required")
	}
	return nil
}

// hold waits Options.HoldDelay, or until the client goes away.
func (s *Server) hold(r *http.Request) error {
	if s.opts.HoldDelay <= 0 {
		return nil
	}
	t := time.NewTimer(s.opts.HoldDelay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-r.Context().Done():
		return errDropped
	}
}

func messageContents(msgs []struct {
	Content json.RawMessage `json:"content"`
}) []json.RawMessage {
	out := make([]json.RawMessage, len(msgs))
	for i, m := range msgs {
		out[i] = m.Content
	}
	return out
}
