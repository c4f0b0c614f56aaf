package mockupstream

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// deploymentPrefix starts a request path that names a deployment: /d/<name>/v1/... is
// served as /v1/... for deployment <name>. One mock can so stand in for several
// deployments, each with its own base URL <mock>/d/<name>, and fail for one of them.
const deploymentPrefix = "/d/"

// DeploymentFailure is a failure injected into one deployment's requests until a
// moment (see SetDeploymentFailure).
type DeploymentFailure struct {
	Deployment string
	Failure    Failure
	Until      time.Time
}

// splitDeployment returns the deployment a request path names and the path to serve
// it as: ("openai-eu", "/v1/models") for /d/openai-eu/v1/models, ("", path) for a
// path without the prefix or with an empty name.
func splitDeployment(path string) (deployment, rest string) {
	after, ok := strings.CutPrefix(path, deploymentPrefix)
	if !ok {
		return "", path
	}
	name, rest, _ := strings.Cut(after, "/")
	if name == "" {
		return "", path
	}
	return name, "/" + rest
}

// withPath returns a shallow copy of r whose URL path is path, as http.StripPrefix
// makes one.
func withPath(r *http.Request, path string) *http.Request {
	r2 := new(http.Request)
	*r2 = *r
	r2.URL = new(url.URL)
	*r2.URL = *r.URL
	r2.URL.Path = path
	r2.URL.RawPath = ""
	return r2
}

// SetDeploymentFailure makes every request for deployment (a path under
// /d/<deployment>/) fail as f describes until the moment until, when it stops by
// itself. It replaces the deployment's earlier failure; FailNone clears it. While it
// lasts it takes precedence over SetFailure's failure for that deployment's requests,
// and affects no other request.
func (s *Server) SetDeploymentFailure(deployment string, f Failure, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == FailNone {
		delete(s.deploymentFailures, deployment)
		return
	}
	if s.deploymentFailures == nil {
		s.deploymentFailures = make(map[string]DeploymentFailure)
	}
	s.deploymentFailures[deployment] = DeploymentFailure{Deployment: deployment, Failure: f, Until: until}
}

// ClearDeploymentFailure ends deployment's failure, if it has one.
func (s *Server) ClearDeploymentFailure(deployment string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.deploymentFailures, deployment)
}

// ClearDeploymentFailures ends every deployment's failure. SetFailure's failure stays.
func (s *Server) ClearDeploymentFailures() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deploymentFailures = nil
}

// DeploymentFailures returns the deployment failures still in force, by deployment
// name.
func (s *Server) DeploymentFailures() []DeploymentFailure {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(time.Now())
	out := make([]DeploymentFailure, 0, len(s.deploymentFailures))
	for _, f := range s.deploymentFailures {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b DeploymentFailure) int { return strings.Compare(a.Deployment, b.Deployment) })
	return out
}

// failureForLocked is the failure in force for a request for deployment ("" for
// none) at now: the deployment's own while it lasts, else SetFailure's. s.mu is held.
func (s *Server) failureForLocked(deployment string, now time.Time) Failure {
	s.pruneLocked(now)
	if f, ok := s.deploymentFailures[deployment]; ok && deployment != "" {
		return f.Failure
	}
	return s.failure
}

// pruneLocked forgets the deployment failures that ended by now. s.mu is held.
func (s *Server) pruneLocked(now time.Time) {
	for name, f := range s.deploymentFailures {
		if !now.Before(f.Until) {
			delete(s.deploymentFailures, name)
		}
	}
}
