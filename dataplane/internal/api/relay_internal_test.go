package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

// TestReachesClientAgreesWithUpstreamFailure: the relay span is started for the
// answers upstreamFailure lets through, and only for them.
func TestReachesClientAgreesWithUpstreamFailure(t *testing.T) {
	e := echo.New()
	for status := 100; status < 600; status++ {
		c := e.NewContext(httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil), httptest.NewRecorder())
		resp := &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("{}"))}
		passes := upstreamFailure(c, resp, "d") == nil
		if got := reachesClient(status); got != passes {
			t.Errorf("status %d: reachesClient %v, but upstreamFailure lets it through: %v", status, got, passes)
		}
	}
}
