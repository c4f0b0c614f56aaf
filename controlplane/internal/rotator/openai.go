package rotator

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

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

// adminCall makes one call to d's provider admin API with the admin key from Vault.
// Errors never carry the admin key or a minted key.
func (r *Rotator) adminCall(ctx context.Context, d policy.Deployment, method, path string, body []byte) ([]byte, error) {
	adminKey, err := r.o.Vault.ReadKV(ctx, d.AdminKeyPath, 0)
	r.access(ctx, d, d.AdminKeyPath, adminKey.Version, keyevents.ReasonAdminKey, err)
	if err != nil {
		return nil, apierr.Wrap(apierr.VaultUnavailable, err, "reading the provider admin key from Vault failed")
	}
	client, err := r.adminClient(d)
	if err != nil {
		return nil, apierr.Wrap(apierr.ProviderAdminError, err, "the provider's admin API cannot be reached with this deployment's TLS settings")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(d.BaseURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, apierr.Wrap(apierr.Internal, err, "internal error")
	}
	req.Header.Set("Authorization", "Bearer "+adminKey.Key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, apierr.Wrap(apierr.ProviderAdminError, fmt.Errorf("deployment %s: %s %s: %w", d.Name, method, path, err),
			"the provider's admin API could not be reached")
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return nil, apierr.Wrap(apierr.ProviderAdminError, fmt.Errorf("deployment %s: %s %s: status %d", d.Name, method, path, resp.StatusCode),
			"the provider's admin API answered %d", resp.StatusCode)
	}
	return raw, nil
}

// adminClient is the HTTP client for d's admin API: the rotator's, with d's CA
// bundle when it names one.
func (r *Rotator) adminClient(d policy.Deployment) (*http.Client, error) {
	if d.TLS.CAFile == "" {
		return r.o.HTTP, nil
	}
	pem, err := os.ReadFile(d.TLS.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", d.TLS.CAFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Timeout: r.o.HTTP.Timeout, Transport: tr}, nil
}
