package audit

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestStreamConfig(t *testing.T) {
	tests := []struct {
		name string
		o    StreamOptions
		want func(t *testing.T, c jetstream.StreamConfig)
	}{
		{"defaults", StreamOptions{Region: "eu"}, func(t *testing.T, c jetstream.StreamConfig) {
			if c.Name != "PC_AUDIT_EU" || len(c.Subjects) != 1 || c.Subjects[0] != "audit.eu.>" {
				t.Errorf("name %q subjects %v", c.Name, c.Subjects)
			}
			if c.Storage != jetstream.FileStorage || !c.DenyDelete || !c.DenyPurge {
				t.Errorf("storage %v deny delete %v deny purge %v", c.Storage, c.DenyDelete, c.DenyPurge)
			}
			if c.Duplicates != 2*time.Minute || c.MaxAge != DefaultStreamMaxAge || c.Replicas != 1 {
				t.Errorf("duplicates %v max age %v replicas %d", c.Duplicates, c.MaxAge, c.Replicas)
			}
			if c.Placement != nil {
				t.Errorf("placement %+v without a tag", c.Placement)
			}
		}},
		{"placement, replicas and age", StreamOptions{Region: "us", PlacementTag: "region:us", Replicas: 3, MaxAge: time.Hour},
			func(t *testing.T, c jetstream.StreamConfig) {
				if c.Placement == nil || len(c.Placement.Tags) != 1 || c.Placement.Tags[0] != "region:us" {
					t.Errorf("placement %+v", c.Placement)
				}
				if c.Replicas != 3 || c.MaxAge != time.Hour || c.Subjects[0] != "audit.us.>" {
					t.Errorf("replicas %d max age %v subjects %v", c.Replicas, c.MaxAge, c.Subjects)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.want(t, StreamConfig(tc.o)) })
	}
}
