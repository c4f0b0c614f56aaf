package console

import (
	"cmp"
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// limitUse is one of a client's limits and how much of it the workers hold now.
type limitUse struct {
	Name    string
	Held    int64
	Limit   int64 // 0: no limit
	Window  string
	Workers map[string]int64 // concurrency: slots per worker
}

// Share is Held as a fraction of Limit, for the meter; 0 without a limit.
func (u limitUse) Share() float64 {
	if u.Limit <= 0 {
		return 0
	}
	return min(float64(u.Held)/float64(u.Limit), 1)
}

// limitsNow reads what the workers hold of a client's limits in the current
// windows from PC_LIMITS: the requests and tokens they have leased from the global
// counters (what requests spent is at most that) and the concurrency slots each
// holds. The limits are the tier's, with an override in force replacing them.
func (c *Console) limitsNow(ctx context.Context, client string, tier *policy.Tier, o *policy.LimitOverride) ([]limitUse, error) {
	now := time.Now().UTC()
	rpm, tph, conc := int64(0), int64(0), int64(0)
	if tier != nil {
		rpm, tph, conc = tier.RequestsPerMinute, tier.TokensPerHour, tier.MaxConcurrentRequests
	}
	if o != nil && o.ExpiresAt.After(now) {
		rpm, tph, conc = cmp.Or(o.RequestsPerMinute, rpm), cmp.Or(o.TokensPerHour, tph), cmp.Or(o.MaxConcurrentRequests, conc)
	}
	key := natsnames.LimitsClientKey(client)
	minute, hour := now.Truncate(time.Minute), now.Truncate(time.Hour)
	count := func(k string) (int64, error) {
		b, err := c.limits(ctx, k)
		if err != nil || b == nil {
			return 0, err
		}
		return strconv.ParseInt(string(b), 10, 64)
	}
	requests, err := count(natsnames.LimitsRequestsPrefix + key + "." + strconv.FormatInt(minute.Unix(), 10))
	if err != nil {
		return nil, err
	}
	tokens, err := count(natsnames.LimitsTokensPrefix + key + "." + strconv.FormatInt(hour.Unix(), 10))
	if err != nil {
		return nil, err
	}
	var slots struct {
		Held map[string]int64 `json:"held"`
	}
	if b, err := c.limits(ctx, natsnames.LimitsConcurrencyPrefix+key); err != nil {
		return nil, err
	} else if b != nil {
		if err := json.Unmarshal(b, &slots); err != nil {
			return nil, err
		}
	}
	var held int64
	for _, n := range slots.Held {
		held += n
	}
	return []limitUse{
		{Name: "Requests this minute", Held: requests, Limit: rpm, Window: minute.Format("15:04") + " UTC"},
		{Name: "Tokens this hour", Held: tokens, Limit: tph, Window: hour.Format("15:04") + " UTC"},
		{Name: "Concurrent requests", Held: held, Limit: conc, Workers: slots.Held},
	}, nil
}
