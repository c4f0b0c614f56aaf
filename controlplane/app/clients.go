package app

import (
	"context"
	"errors"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/devissuer"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// clientDirectory answers the dev issuer's "does this client exist" from Postgres.
type clientDirectory struct{ st *store.Store }

var _ devissuer.ClientDirectory = clientDirectory{}

func (d clientDirectory) ClientExists(ctx context.Context, clientID string) (bool, error) {
	_, err := d.st.Clients().Get(ctx, clientID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

func (d clientDirectory) RecordMint(ctx context.Context, clientID, jti string, expiresAt time.Time) error {
	return d.st.RecordChange(ctx, store.Change{Action: "mint", Resource: "client-tokens", Key: clientID,
		After: map[string]any{"jti": jti, "expires_at": expiresAt}})
}
