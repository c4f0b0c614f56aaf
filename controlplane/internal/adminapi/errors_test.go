package adminapi_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminapi"
	"github.com/portcullis-gw/portcullis/shared/apierr"
)

func TestErrorHandlerShowsCodesButNeverInternals(t *testing.T) {
	var logs bytes.Buffer
	e := echo.New()
	e.HTTPErrorHandler = adminapi.ErrorHandler(slog.New(slog.NewJSONHandler(&logs, nil)))
	e.GET("/internal", func(echo.Context) error { return errors.New("dial tcp 10.0.0.7:5432: secret detail") })
	e.GET("/wrapped", func(echo.Context) error {
		return apierr.Wrap(apierr.Conflict, errors.New("pg: secret detail"), "a tier with this name already exists")
	})
	e.GET("/echo", func(echo.Context) error { return echo.ErrUnsupportedMediaType })
	srv := httptest.NewServer(e)
	defer srv.Close()

	tests := []struct {
		path   string
		status int
		code   string
		logged bool
	}{
		{"/internal", http.StatusInternalServerError, "internal_error", true},
		{"/wrapped", http.StatusConflict, "conflict", false},
		{"/echo", http.StatusUnsupportedMediaType, "unsupported_media_type", false},
		{"/missing", http.StatusNotFound, "not_found", false},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			logs.Reset()
			resp, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(body), `"code":"`+tc.code+`"`) {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, body, tc.status, tc.code)
			}
			if strings.Contains(string(body), "secret") {
				t.Fatalf("internal detail reached the client: %s", body)
			}
			if got := strings.Contains(logs.String(), "secret detail"); got != tc.logged {
				t.Fatalf("cause logged = %v, want %v: %s", got, tc.logged, logs.String())
			}
		})
	}
}
