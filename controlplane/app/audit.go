package app

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive"
	"github.com/portcullis-gw/portcullis/shared/audit"
)

// startAudit starts archiving (in the App's group) the regions' audit streams (PC_AUDIT_<REGION>) in
// Postgres, unless cfg.AuditIngest is off. Replicas share each region's durable
// consumer, so running it on every replica archives each event once.
func (a *App) startAudit(cfg Config, reg prometheus.Registerer) error {
	js, err := jetstream.New(a.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// Data planes may not create streams (docs/nats.md): they ask, and the control
	// plane creates their region's audit stream with the one safe configuration.
	if _, err := audit.ServeStreamCreate(a.nc, js, 30*time.Second); err != nil {
		return err
	}
	if !cfg.AuditIngest {
		a.log.Info("audit ingest is off: this replica archives no audit events")
		return nil
	}
	in := auditarchive.New(auditarchive.Options{JetStream: js, Store: a.st, Log: a.log})
	reg.MustRegister(in.Collectors()...)
	a.group.Go("audit ingest", in.Run)
	return nil
}
