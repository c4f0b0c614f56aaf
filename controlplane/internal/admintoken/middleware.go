package admintoken

import (
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// maxHeader bounds the Authorization header we are willing to hash.
const maxHeader = 512

// Middleware admits a request only if it carries "Authorization: Bearer <token>" with a
// current admin token; otherwise it fails with 401 "unauthorized". Tokens are looked up
// by their SHA-256: they carry 256 bits of entropy, so the lookup's timing reveals
// nothing useful about any token.
func Middleware(st *store.Store) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			token, ok := bearer(c.Request().Header.Get(echo.HeaderAuthorization))
			if !ok {
				return unauthorized(c)
			}
			valid, err := st.AdminTokenExists(c.Request().Context(), Hash(token))
			if err != nil {
				return apierr.Wrap(apierr.Internal, err, "internal error")
			}
			if !valid {
				return unauthorized(c)
			}
			return next(c)
		}
	}
}

func bearer(header string) (string, bool) {
	if len(header) > maxHeader {
		return "", false
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, strings.HasPrefix(token, prefix)
}

func unauthorized(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="portcullis-admin"`)
	return apierr.New(apierr.Unauthorized, "missing or invalid admin token")
}
