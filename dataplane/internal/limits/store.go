package limits

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// errConflict reports that a compare-and-swap lost: the key changed since the
// revision it was based on.
var errConflict = errors.New("counter changed concurrently")

// counterStore reads and compare-and-swaps keys of the PC_LIMITS bucket through
// its backing stream, so that every write can carry its own TTL and a read sees the
// revision of a key's expiry marker too (a write based on it still refuses a stale
// revision). Safe for concurrent use.
type counterStore struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	ops    *opMetrics
	// timeout bounds each operation (Options.OpTimeout), from when it starts: time a
	// request spent queued behind others' operations on the same counter does not
	// count against it.
	timeout time.Duration
}

// get returns the value and revision of key. A key that never existed has revision
// 0; a deleted or expired one has its marker's revision; both read as nil data.
func (s *counterStore) get(ctx context.Context, key string) ([]byte, uint64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	start := time.Now()
	msg, err := s.stream.GetLastMsgForSubject(ctx, natsnames.KVSubject(natsnames.LimitsBucket, key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		err = nil
		msg = nil
	}
	s.ops.observe("read", start, err)
	switch {
	case msg == nil && err == nil:
		return nil, 0, nil
	case err != nil:
		return nil, 0, fmt.Errorf("read %s: %w", key, err)
	}
	if msg.Header.Get("KV-Operation") != "" || msg.Header.Get("Nats-Marker-Reason") != "" {
		return nil, msg.Sequence, nil
	}
	return msg.Data, msg.Sequence, nil
}

// cas writes data to key if its revision is still rev, with a TTL after which the
// key expires unless written again. It returns the new revision, or errConflict.
func (s *counterStore) cas(ctx context.Context, key string, data []byte, rev uint64, ttl time.Duration) (uint64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	start := time.Now()
	ack, err := s.js.PublishMsg(ctx, &nats.Msg{Subject: natsnames.KVSubject(natsnames.LimitsBucket, key), Data: data},
		jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(ttl))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		s.ops.observe("cas_conflict", start, nil)
		return 0, errConflict
	}
	s.ops.observe("cas", start, err)
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", key, err)
	}
	return ack.Sequence, nil
}

// bound is ctx bounded by the operation timeout (none when it is not set).
func (s *counterStore) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.timeout)
}

// parseCount reads a counter value; nil data is 0.
func parseCount(data []byte) (int64, error) {
	if len(data) == 0 {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(data), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("counter value %q: %w", data, err)
	}
	return n, nil
}
