package keys

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-gw/portcullis/shared/keyevents"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// Follow applies every rotation and revocation announced on PC_KEYS to m, from the
// moment it starts (a worker reads Vault's current state when a key is first used,
// so it needs no history), until ctx ends. It subscribes to the announcements'
// subjects: a data plane's NATS identity may not create a consumer on PC_KEYS
// (docs/nats.md). What it misses while NATS is unreachable, the periodic metadata
// check covers. It returns nil once ctx ends: it has the shape of every
// long-running component.
func Follow(ctx context.Context, js jetstream.JetStream, m *Manager, log *slog.Logger) error {
	nc := js.Conn()
	msgs := make(chan *nats.Msg, 64)
	for _, subject := range natsnames.KeysLifecycleSubjects {
		sub, err := nc.ChanSubscribe(subject, msgs)
		if err != nil {
			return fmt.Errorf("key events: subscribe to %s: %w", subject, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-msgs:
			e, err := keyevents.DecodeEvent(msg.Data)
			if err != nil {
				log.Error("key event rejected", "subject", msg.Subject, "err", err)
				continue
			}
			log.Info("key event", "kind", e.Kind, "deployment", e.Deployment, "key_version", e.KeyVersion, "reason", e.Reason)
			m.Apply(ctx, e)
		}
	}
}

// maxAccessQueue bounds the key-access events waiting for NATS.
const maxAccessQueue = 10000

// AccessPublisher publishes key-access events on PC_KEYS, in order, retrying while
// NATS is unreachable; events beyond maxAccessQueue waiting are dropped, counted and
// logged.
type AccessPublisher struct {
	js      jetstream.JetStream
	subject string
	log     *slog.Logger
	queue   chan keyevents.Access
	dropped prometheus.Counter
	sent    prometheus.Counter
}

// NewAccessPublisher returns a publisher for the events of worker, a data plane of
// region; Run sends them.
func NewAccessPublisher(js jetstream.JetStream, region, worker string, log *slog.Logger, reg prometheus.Registerer) (*AccessPublisher, error) {
	p := &AccessPublisher{
		js: js, subject: natsnames.KeysAccessSubject(region, worker), log: log,
		queue: make(chan keyevents.Access, maxAccessQueue),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "portcullis_keys", Name: "access_events_dropped_total",
			Help: "Key-access events dropped because too many were waiting for NATS."}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "portcullis_keys", Name: "access_events_published_total",
			Help: "Key-access events published on PC_KEYS."}),
	}
	for _, c := range []prometheus.Collector{p.dropped, p.sent} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Publish queues a; it never blocks.
func (p *AccessPublisher) Publish(a keyevents.Access) {
	select {
	case p.queue <- a:
	default:
		p.dropped.Inc()
		p.log.Error("key-access event dropped: too many waiting for NATS", "deployment", a.Deployment, "path", a.Path, "reason", a.Reason)
	}
}

// Run publishes queued events until ctx ends, then makes one bounded attempt at what
// is left, and returns nil.
func (p *AccessPublisher) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			p.drain()
			return nil
		case a := <-p.queue:
			backoff := 100 * time.Millisecond
			for !p.send(ctx, a) {
				select {
				case <-ctx.Done():
					p.drain()
					return nil
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
			}
		}
	}
}

func (p *AccessPublisher) send(ctx context.Context, a keyevents.Access) bool {
	data, err := keyevents.Encode(a)
	if err != nil {
		p.log.Error("key-access event not encodable", "err", err)
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	msg := &nats.Msg{Subject: p.subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, a.ID)
	if _, err := p.js.PublishMsg(ctx, msg); err != nil {
		p.log.Debug("publishing a key-access event failed; retrying", "err", err)
		return false
	}
	p.sent.Inc()
	return true
}

// drain makes one attempt, bounded in time, at the events still queued.
func (p *AccessPublisher) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for {
		select {
		case a := <-p.queue:
			if !p.send(ctx, a) {
				p.log.Warn("key-access events left unpublished at shutdown", "count", len(p.queue)+1)
				return
			}
		default:
			return
		}
	}
}
