package rotator

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/keyevents"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// The openai_admin minter makes each new key a project service account of
// OpenAI's organization admin API, with an admin key read from Vault
// (admin_key_path), and deletes an old key's service account when it is retired:
// https://platform.openai.com/docs/api-reference/project-service-accounts

// serviceAccount is the answer to creating a project service account.
type serviceAccount struct {
	ID     string `json:"id"`
	APIKey struct {
		Value string `json:"value"`
		ID    string `json:"id"`
	} `json:"api_key"`
}

// mintOpenAI creates a service account in d's project and returns its key and id.
func (r *Rotator) mintOpenAI(ctx context.Context, d policy.Deployment) (key, accountID string, err error) {
	body, _ := json.Marshal(map[string]string{"name": "portcullis-" + d.Name + "-" + r.o.Now().UTC().Format("20060102T150405Z")})
	raw, err := r.adminCall(ctx, d, http.MethodPost, accountsPath(d, ""), body)
	if err != nil {
		return "", "", err
	}
	var sa serviceAccount
	if err := json.Unmarshal(raw, &sa); err != nil || sa.ID == "" || sa.APIKey.Value == "" {
		return "", "", apierr.Wrap(apierr.ProviderAdminError, fmt.Errorf("deployment %s: service account answer without an id or key", d.Name),
			"the provider's admin API answered without a new key")
	}
	return sa.APIKey.Value, sa.ID, nil
}

// deleteAccount deletes service account id of d's project at the provider; one
// already gone (404) counts as deleted.
func (r *Rotator) deleteAccount(ctx context.Context, d policy.Deployment, id string) error {
	_, err := r.adminCall(ctx, d, http.MethodDelete, accountsPath(d, id), nil)
	if e := apierr.From(err); err != nil && e.Code == apierr.ProviderAdminError && strings.Contains(e.Message, "answered 404") {
		return nil
	}
	return err
}

// deleteOldAccounts deletes, at the provider, the service accounts of d's minted
// keys other than keep (the one in use; "" when none is), made by rotations before
// the one with id before (0: any). A retiring rotation passes its own id, so keys
// minted by later rotations, the one in use among them, are left alone. One already
// deleted is fine. Failures are logged: a key left at the provider is revoked in Vault and
// dropped by every worker anyway.
func (r *Rotator) deleteOldAccounts(ctx context.Context, d policy.Deployment, keep string, before int64) {
	if minter(d) != policy.MinterOpenAIAdmin {
		return
	}
	rots, err := r.o.Store.Rotations(ctx, d.Name, 50)
	if err != nil {
		r.o.Log.Error("listing minted keys failed", "deployment", d.Name, "err", err)
		return
	}
	for _, rot := range rots {
		if before > 0 && rot.ID >= before {
			continue
		}
		if id := rot.ProviderKeyID; id != "" && id != keep {
			if err := r.deleteAccount(ctx, d, id); err != nil {
				r.o.Log.Warn("deleting an old key at the provider failed", "deployment", d.Name, "service_account", id, "err", err)
			}
		}
	}
}

func accountsPath(d policy.Deployment, id string) string {
	p := "/v1/organization/projects/" + url.PathEscape(d.AdminProjectID) + "/service_accounts"
	if id != "" {
		p += "/" + url.PathEscape(id)
	}
	return p
}

// adminCall makes one call to OpenAI's admin API, at the configured admin URL
// (never d's base_url), with the admin key from Vault, under d's TLS policy. The
// client follows no redirect, and the key is only ever sent to the admin URL's host.
// Errors never carry the admin key or a minted key.
func (r *Rotator) adminCall(ctx context.Context, d policy.Deployment, method, path string, body []byte) ([]byte, error) {
	if r.adminURL == nil {
		return nil, apierr.Wrap(apierr.ProviderAdminError, fmt.Errorf("openai admin URL %q is not usable", r.o.OpenAIAdminURL),
			"the control plane's OpenAI admin URL (PORTCULLIS_OPENAI_ADMIN_URL) is not usable")
	}
	client, err := adminClient(d, r.adminURL)
	if err != nil {
		return nil, apierr.Wrap(apierr.ProviderAdminError, err, "the provider's admin API cannot be reached with this deployment's TLS settings: %s", err.Error())
	}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(r.adminURL.String(), "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, apierr.Wrap(apierr.Internal, err, "internal error")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	adminKey, err := r.o.Vault.ReadKV(ctx, d.AdminKeyPath, 0)
	r.access(ctx, d, d.AdminKeyPath, adminKey.Version, keyevents.ReasonAdminKey, err)
	if err != nil {
		return nil, apierr.Wrap(apierr.VaultUnavailable, err, "reading the provider admin key from Vault failed")
	}
	// The last look before the key leaves: the request goes to the admin host, and
	// nowhere else.
	if err := sameOrigin(req.URL, r.adminURL); err != nil {
		return nil, apierr.Wrap(apierr.ProviderAdminError, fmt.Errorf("deployment %s: %w", d.Name, err),
			"refusing to send the provider admin key anywhere but the configured admin API")
	}
	req.Header.Set("Authorization", "Bearer "+adminKey.Key)
	resp, err := client.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		msg := "the provider's admin API could not be reached"
		if errors.Is(err, errPinMismatch) {
			msg += ": its certificate matches no pinned public key (tls.pin_sha256)"
		} else if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
			msg += ": its certificate is not trusted (tls.ca_file names the CA bundle to trust)"
		}
		return nil, apierr.Wrap(apierr.ProviderAdminError, fmt.Errorf("deployment %s: %s %s: %w", d.Name, method, path, err), "%s", msg)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminAnswer+1))
	switch {
	case resp.StatusCode/100 == 3:
		return nil, apierr.Wrap(apierr.ProviderAdminError, fmt.Errorf("deployment %s: %s %s: status %d, a redirect (not followed)", d.Name, method, path, resp.StatusCode),
			"the provider's admin API answered %d, a redirect, which the rotator never follows", resp.StatusCode)
	case resp.StatusCode/100 != 2:
		return nil, apierr.Wrap(apierr.ProviderAdminError, fmt.Errorf("deployment %s: %s %s: status %d", d.Name, method, path, resp.StatusCode),
			"the provider's admin API answered %d", resp.StatusCode)
	case err != nil:
		return nil, apierr.Wrap(apierr.ProviderAdminError, fmt.Errorf("deployment %s: %s %s: reading the answer: %w", d.Name, method, path, err),
			"the provider's admin API answer could not be read")
	case len(raw) > maxAdminAnswer:
		return nil, apierr.Wrap(apierr.ProviderAdminError, fmt.Errorf("deployment %s: %s %s: answer over %d bytes", d.Name, method, path, maxAdminAnswer),
			"the provider's admin API answer is larger than %d bytes", maxAdminAnswer)
	}
	return raw, nil
}
