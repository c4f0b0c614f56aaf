package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// TestRestartKeepsAddressAndStore: after Stop and Restart the server is back on the
// same URL with the same JetStream data, and the connection found it by itself.
func TestRestartKeepsAddressAndStore(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := s.JetStream.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "B", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	url := s.URL()
	s.Stop()
	s.Stop() // idempotent
	s.Restart()
	if s.URL() != url || s.Server.ClientURL() != url {
		t.Fatalf("restarted on %s (%s), was %s", s.URL(), s.Server.ClientURL(), url)
	}
	var got jetstream.KeyValueEntry
	waitfor.That(t, "the data after the restart", func() bool {
		kv, err := s.JetStream.KeyValue(ctx, "B")
		if err != nil {
			return false
		}
		got, err = kv.Get(ctx, "k")
		return err == nil
	})
	if string(got.Value()) != "v" {
		t.Fatalf("value %q after the restart", got.Value())
	}
}
