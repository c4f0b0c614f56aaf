package app

import (
	"github.com/portcullis-gw/portcullis/controlplane/internal/anomaly"
)

// startAnomaly starts the anomaly detector in the App's group, unless cfg.AnomalyCheckInterval is 0.
// Alerts are de-duplicated in Postgres, so every replica may run it. Its alerts go
// through the App's alerter (startAlerts).
func (a *App) startAnomaly(cfg Config) error {
	if cfg.AnomalyCheckInterval == 0 {
		a.log.Info("anomaly detection is off on this replica")
		return nil
	}
	d := anomaly.New(anomaly.Options{Store: a.st, Alerts: a.alerts, Notify: a.pub.Notify,
		Interval: cfg.AnomalyCheckInterval, Log: a.log})
	a.group.Go("anomaly detector", d.Run)
	return nil
}
