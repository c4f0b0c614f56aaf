package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/dataplane/internal/limits"
	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
	"github.com/portcullis-gw/portcullis/dataplane/internal/usage"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// Admitter admits requests against clients' global limits.
type Admitter interface {
	Admit(ctx context.Context, client string, lim limits.Limits, tokens int64) (*limits.Ticket, error)
}

var _ Admitter = (*limits.Limiter)(nil)

// DefaultMaxTokens is the output budget of a request that sets no max_tokens, when
// its tier sets no default_max_tokens. The gateway writes it into the request, so
// the upstream enforces what was reserved.
const DefaultMaxTokens = 4096

// Rate-limit response headers, as OpenAI names them.
const (
	headerLimitRequests     = "X-Ratelimit-Limit-Requests"
	headerRemainingRequests = "X-Ratelimit-Remaining-Requests"
	headerResetRequests     = "X-Ratelimit-Reset-Requests"
	headerLimitTokens       = "X-Ratelimit-Limit-Tokens"
	headerRemainingTokens   = "X-Ratelimit-Remaining-Tokens"
	headerResetTokens       = "X-Ratelimit-Reset-Tokens"
)

// admit applies the client's limits to req: it estimates the tokens the request
// may use (writing the output budget into the request), takes them with a
// concurrency slot and a request from the client's windows, and sets the
// x-ratelimit-* headers. The returned ticket must be finished with the tokens used.
func (s *server) admit(c echo.Context, client *policycache.Client, x *exchange) (ticket *limits.Ticket, err error) {
	req := x.req
	lim := client.Limits(time.Now())
	if s.Limiter == nil {
		return nil, nil
	}
	_, span := s.Tracer.Start(c.Request().Context(), spanLimits)
	defer func() { endSpan(span, err) }()
	var tokens int64
	if lim.TokensPerHour > 0 {
		x.prompt = usage.EstimatePrompt(req.op, req.fields)
		tokens = x.prompt
		if req.op != policy.OpEmbeddings {
			// Each choice may use the whole output budget, so the budget left after
			// the prompt is shared among them.
			out, err := outputBudget(req, client.Tier, (lim.TokensPerHour-x.prompt)/req.choices)
			if err != nil {
				return nil, err
			}
			tokens += out * req.choices
		}
	}
	ticket, err = s.Limiter.Admit(c.Request().Context(), client.ID, limits.Limits{
		RequestsPerMinute:     lim.RequestsPerMinute,
		TokensPerHour:         lim.TokensPerHour,
		MaxConcurrentRequests: lim.MaxConcurrentRequests,
	}, tokens)
	h := c.Response().Header()
	var denied *limits.Denied
	switch {
	case err == nil:
		setRateHeaders(h, ticket.Status)
		return ticket, nil
	case errors.As(err, &denied):
		setRateHeaders(h, denied.Status)
		if !denied.TooLarge {
			h.Set("Retry-After", strconv.FormatInt(retryAfterSeconds(denied), 10))
		}
		return nil, deniedError(denied, lim.Overridden)
	case errors.Is(err, limits.ErrUnavailable):
		return nil, apierr.Wrap(apierr.LimitsUnavailable, err, "the gateway cannot check rate limits right now; retry shortly")
	default:
		return nil, apierr.Wrap(apierr.Internal, err, "internal error")
	}
}

// outputFields are the request members that cap a completion's tokens.
var outputFields = [...]string{"max_completion_tokens", "max_tokens"}

// outputBudget returns the completion tokens req may use and makes the request
// carry that cap: the smaller of the client's max_completion_tokens and max_tokens,
// else the tier's default (at most its max_output_tokens), clamped to what is left
// of the hourly budget after the prompt. The cap is written into every one of the
// two fields the client set, or into max_tokens (the most widely accepted) when it
// set neither.
func outputBudget(req *request, tier *policycache.Tier, room int64) (int64, error) {
	var asked int64
	var present []string
	for _, field := range outputFields {
		raw, ok := req.fields[field]
		if !ok || string(raw) == "null" {
			continue
		}
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil || n <= 0 {
			return 0, paramError(field, field+" must be a positive integer")
		}
		present = append(present, field)
		if asked == 0 || n < asked {
			asked = n
		}
	}
	out := asked
	if out == 0 {
		out = tier.DefaultMaxTokens
		if out <= 0 {
			out = DefaultMaxTokens
		}
		if tier.MaxOutputTokens > 0 {
			out = min(out, tier.MaxOutputTokens)
		}
		present = []string{"max_tokens"}
	}
	if room >= 1 && out > room {
		out = room
	}
	value := json.RawMessage(strconv.FormatInt(out, 10))
	for _, field := range present {
		if string(req.fields[field]) != string(value) {
			req.fields[field] = value
		}
	}
	return out, nil
}

// checkBounds applies the gateway's and the tier's caps on what one request may ask
// to generate, whether or not limits are enforced: it sets req.choices (see
// requestChoices), and refuses a max_tokens or max_completion_tokens over the
// tier's max_output_tokens with a 400 naming the field.
func checkBounds(req *request, tier *policycache.Tier) error {
	req.choices = 1
	if req.op == policy.OpEmbeddings {
		return nil
	}
	choices, err := requestChoices(req, tier.MaxChoices)
	if err != nil {
		return err
	}
	req.choices = choices
	if tier.MaxOutputTokens <= 0 {
		return nil
	}
	for _, field := range outputFields {
		raw, ok := req.fields[field]
		if !ok || string(raw) == "null" {
			continue
		}
		var n int64
		if err := json.Unmarshal(raw, &n); err == nil && n > tier.MaxOutputTokens {
			return paramError(field, fmt.Sprintf("%s must be at most %d for this client's tier", field, tier.MaxOutputTokens))
		}
	}
	return nil
}

// requestChoices is how many completions req asks the upstream to generate, each
// up to the output budget: the larger of n and best_of (legacy completions), 1 when
// neither is set. Either one that is not an integer from 1 to the tier's cap
// (tierCap, or policy.MaxChoicesLimit when the tier sets none) is a 400 naming it.
func requestChoices(req *request, tierCap int64) (int64, error) {
	limit := int64(policy.MaxChoicesLimit)
	if tierCap > 0 {
		limit = min(limit, tierCap)
	}
	choices := int64(1)
	for _, field := range [...]string{"n", "best_of"} {
		raw, ok := req.fields[field]
		if !ok || string(raw) == "null" {
			continue
		}
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil || n < 1 || n > limit {
			msg := fmt.Sprintf("%s must be an integer from 1 to %d", field, limit)
			if limit < policy.MaxChoicesLimit {
				msg += " for this client's tier"
			}
			return 0, paramError(field, msg)
		}
		choices = max(choices, n)
	}
	return choices, nil
}

func deniedError(d *limits.Denied, overridden bool) *apierr.Error {
	var what string
	switch d.Kind {
	case limits.KindRequests:
		what = "requests per minute"
	case limits.KindTokens:
		what = "tokens per hour"
	default:
		what = "concurrent requests"
	}
	var e *apierr.Error
	if d.TooLarge {
		e = apierr.New(apierr.RateLimited, "Request too large: it needs more tokens than this client's limit of %d %s.", d.Limit, what)
	} else {
		e = apierr.New(apierr.RateLimited, "Rate limit reached for %s: limit %d. Please try again in %s.", what, d.Limit,
			limits.FormatReset(time.Duration(retryAfterSeconds(d))*time.Second))
	}
	if overridden {
		e.Message += " A temporary limit override is in force for this client."
	}
	e.ErrType = d.Kind
	return e
}

// retryAfterSeconds is d's Retry-After: whole seconds, rounded up, at least 1.
func retryAfterSeconds(d *limits.Denied) int64 {
	return int64(math.Ceil(max(d.RetryAfter, time.Second).Seconds()))
}

func setRateHeaders(h interface{ Set(string, string) }, st limits.Status) {
	if r := st.Requests; r.Limit > 0 {
		h.Set(headerLimitRequests, strconv.FormatInt(r.Limit, 10))
		h.Set(headerRemainingRequests, strconv.FormatInt(r.Remaining, 10))
		h.Set(headerResetRequests, limits.FormatReset(r.Reset))
	}
	if t := st.Tokens; t.Limit > 0 {
		h.Set(headerLimitTokens, strconv.FormatInt(t.Limit, 10))
		h.Set(headerRemainingTokens, strconv.FormatInt(t.Remaining, 10))
		h.Set(headerResetTokens, limits.FormatReset(t.Reset))
	}
}
