package mockupstream

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The admin API is the subset of OpenAI's organization admin API (project service
// accounts) that a key minter uses, served under adminPrefix when an admin key is set
// (Options.AdminKey, SetAdminKey):
//
//	POST   /v1/organization/projects/{project}/service_accounts       {"name":"..."}
//	GET    /v1/organization/projects/{project}/service_accounts       ?limit=&after=
//	GET    /v1/organization/projects/{project}/service_accounts/{id}
//	DELETE /v1/organization/projects/{project}/service_accounts/{id}
//
// Creating a service account mints a random key ("sk-svcacct-..."), which the mock
// accepts at once (see AcceptKey: this turns key checking on); deleting the account
// revokes its key. Only the create answer shows the key; lists never do. Every call
// needs "Authorization: Bearer <admin key>"; the admin key is not a model key.
const adminPrefix = "/v1/organization/"

// Limits of the admin API, as OpenAI documents them.
const (
	maxExpiresInSeconds = 365 * 24 * 3600
	defaultListLimit    = 20
	maxListLimit        = 100
)

// ServiceAccount is a project service account the admin API created, as tests may
// inspect it: its key appears only as a fingerprint.
type ServiceAccount struct {
	ID             string
	Project        string
	Name           string
	KeyFingerprint string // Fingerprint of its key, "" when it has none
	Created        time.Time
}

// serviceAccount is one account of the admin API. Its fields never change after
// creation.
type serviceAccount struct {
	ServiceAccount
	seq       int    // creation order, for lists
	keyID     string // "" when it has no key
	key       string
	expiresAt int64 // the key's end, Unix seconds; 0 for none
}

// SetAdminKey sets the admin API's key, replacing Options.AdminKey; "" turns the
// admin API off (it answers 404). The service accounts stay.
func (s *Server) SetAdminKey(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.adminKey = key
}

// ServiceAccounts returns the admin API's service accounts, in every project, oldest
// first.
func (s *Server) ServiceAccounts() []ServiceAccount {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ServiceAccount, 0, len(s.accounts))
	for _, a := range s.sortedAccountsLocked("") {
		out = append(out, a.ServiceAccount)
	}
	return out
}

// sortedAccountsLocked returns the accounts of project ("" for every project), oldest
// first. s.mu is held.
func (s *Server) sortedAccountsLocked(project string) []*serviceAccount {
	var out []*serviceAccount
	for _, a := range s.accounts {
		if project == "" || a.Project == project {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b *serviceAccount) int { return a.seq - b.seq })
	return out
}

func isAdminPath(path string) bool {
	return strings.HasPrefix(path+"/", adminPrefix)
}

// admin serves one admin API request: it checks the admin key, then the route.
func (s *Server) admin(w http.ResponseWriter, r *http.Request, body []byte) error {
	s.mu.Lock()
	adminKey := s.adminKey
	s.mu.Unlock()
	if adminKey == "" {
		return errNotFound(r)
	}
	key, ok := requestKey(r.Header, openAIDialect)
	switch {
	case !ok:
		return errNoKey()
	case subtle.ConstantTimeCompare([]byte(key), []byte(adminKey)) != 1:
		return errBadKey(key)
	}

	// projects/{project}/service_accounts[/{id}]
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, adminPrefix), "/")
	if len(parts) < 3 || len(parts) > 4 || parts[0] != "projects" || parts[1] == "" || parts[2] != "service_accounts" {
		return errNotFound(r)
	}
	project := parts[1]
	if len(parts) == 3 {
		switch r.Method {
		case http.MethodPost:
			return s.createAccount(w, project, body)
		case http.MethodGet:
			return s.listAccounts(w, r, project)
		}
		return errMethod(r)
	}
	id := parts[3]
	switch r.Method {
	case http.MethodGet:
		return s.getAccount(w, project, id)
	case http.MethodDelete:
		return s.deleteAccount(w, project, id)
	}
	return errMethod(r)
}

// accountView is a service account as OpenAI's admin API shows it.
type accountView struct {
	Object    string `json:"object"`
	ID        string `json:"id"`
	Name      string `json:"name"`
	Role      string `json:"role"`
	CreatedAt int64  `json:"created_at"`
}

// apiKeyView is a new service account's key, shown once, by the create answer only.
type apiKeyView struct {
	Object    string `json:"object"`
	Value     string `json:"value"`
	Name      string `json:"name"`
	CreatedAt int64  `json:"created_at"`
	ID        string `json:"id"`
	ExpiresAt *int64 `json:"expires_at"`
}

// createdView is the answer to a create: the account and its key (null when it was
// created without one).
type createdView struct {
	accountView
	APIKey *apiKeyView `json:"api_key"`
}

func (a *serviceAccount) view() accountView {
	role := "member"
	if a.keyID == "" {
		role = "none" // created with create_service_account_only
	}
	return accountView{
		Object:    "organization.project.service_account",
		ID:        a.ID,
		Name:      a.Name,
		Role:      role,
		CreatedAt: a.Created.Unix(),
	}
}

// createRequest is the body of a create.
type createRequest struct {
	Name                     string `json:"name"`
	CreateServiceAccountOnly bool   `json:"create_service_account_only"`
	ExpiresInSeconds         *int64 `json:"expires_in_seconds"`
}

// createAccount creates a service account in project and, unless asked not to, a key
// for it, which the mock accepts at once (until it expires, if it does).
func (s *Server) createAccount(w http.ResponseWriter, project string, body []byte) error {
	var req createRequest
	if err := decode(body, &req); err != nil {
		return err
	}
	switch {
	case req.Name == "":
		return errInvalid("name", "Missing required parameter: 'name'.")
	case req.ExpiresInSeconds != nil && req.CreateServiceAccountOnly:
		return errInvalid("expires_in_seconds", "expires_in_seconds cannot be set when create_service_account_only is true.")
	case req.ExpiresInSeconds != nil && (*req.ExpiresInSeconds < 1 || *req.ExpiresInSeconds > maxExpiresInSeconds):
		return errInvalid("expires_in_seconds", fmt.Sprintf("expires_in_seconds must be between 1 and %d.", maxExpiresInSeconds))
	}
	now := time.Now()
	a := &serviceAccount{ServiceAccount: ServiceAccount{
		ID:      "svc_acct_" + randomID(),
		Project: project,
		Name:    req.Name,
		Created: now,
	}}
	out := createdView{}
	if !req.CreateServiceAccountOnly {
		a.keyID = "key_" + randomID()
		a.key = "sk-svcacct-" + rand.Text() + rand.Text()
		a.KeyFingerprint = Fingerprint(a.key)
		out.APIKey = &apiKeyView{
			Object:    "organization.project.service_account.api_key",
			Value:     a.key,
			Name:      "Secret Key",
			CreatedAt: now.Unix(),
			ID:        a.keyID,
		}
		if req.ExpiresInSeconds != nil {
			end := now.Add(time.Duration(*req.ExpiresInSeconds) * time.Second)
			a.expiresAt = end.Unix()
			out.APIKey.ExpiresAt = &a.expiresAt
			s.AcceptKeyUntil(a.key, end)
		} else {
			s.AcceptKey(a.key)
		}
	}
	// The key is accepted before the account can be found, so that a concurrent delete
	// of the account cannot come before the accept and leave its key accepted.
	s.mu.Lock()
	if s.accounts == nil {
		s.accounts = make(map[string]*serviceAccount)
	}
	s.accountSeq++
	a.seq = s.accountSeq
	s.accounts[a.ID] = a
	s.mu.Unlock()
	out.accountView = a.view()
	return writeJSON(w, out, FailNone)
}

// listAccounts lists project's accounts, oldest first, without keys, a page at a time
// (?limit= 1 to 100, default 20; ?after=<id>).
func (s *Server) listAccounts(w http.ResponseWriter, r *http.Request, project string) error {
	q := r.URL.Query()
	limit := defaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			return errInvalid("limit", fmt.Sprintf("limit must be an integer between 1 and %d.", maxListLimit))
		}
		limit = n
	}
	s.mu.Lock()
	accounts := s.sortedAccountsLocked(project)
	s.mu.Unlock()
	if after := q.Get("after"); after != "" {
		i := slices.IndexFunc(accounts, func(a *serviceAccount) bool { return a.ID == after })
		if i < 0 {
			return errInvalid("after", "No service account "+after+" in this project.")
		}
		accounts = accounts[i+1:]
	}
	hasMore := len(accounts) > limit
	accounts = accounts[:min(limit, len(accounts))]
	out := struct {
		Object  string        `json:"object"`
		Data    []accountView `json:"data"`
		FirstID *string       `json:"first_id"`
		LastID  *string       `json:"last_id"`
		HasMore bool          `json:"has_more"`
	}{Object: "list", Data: make([]accountView, len(accounts)), HasMore: hasMore}
	for i, a := range accounts {
		out.Data[i] = a.view()
	}
	if len(accounts) > 0 {
		out.FirstID, out.LastID = &accounts[0].ID, &accounts[len(accounts)-1].ID
	}
	return writeJSON(w, out, FailNone)
}

// getAccount shows one of project's accounts, without its key.
func (s *Server) getAccount(w http.ResponseWriter, project, id string) error {
	s.mu.Lock()
	a, ok := s.accounts[id]
	s.mu.Unlock()
	if !ok || a.Project != project {
		return errNoAccount(id)
	}
	return writeJSON(w, a.view(), FailNone)
}

// deleteAccount deletes one of project's accounts and revokes its key.
func (s *Server) deleteAccount(w http.ResponseWriter, project, id string) error {
	s.mu.Lock()
	a, ok := s.accounts[id]
	if ok && a.Project == project {
		delete(s.accounts, id)
	}
	s.mu.Unlock()
	if !ok || a.Project != project {
		return errNoAccount(id)
	}
	s.RevokeKey(a.key)
	return writeJSON(w, struct {
		Object  string `json:"object"`
		ID      string `json:"id"`
		Deleted bool   `json:"deleted"`
	}{"organization.project.service_account.deleted", id, true}, FailNone)
}

// randomID returns 26 random lowercase base32 characters (130 bits).
func randomID() string {
	return strings.ToLower(rand.Text())
}
