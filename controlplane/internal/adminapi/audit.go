package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/checkpoint"
	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/export"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/signing"
)

// auditExportPath is the compliance export of one region's audit archive.
const auditExportPath = "/audit/export"

// auditSigningKeyPath serves the public key of the audit signing key (PEM);
// auditCheckpointsPath lists a region's signed chain checkpoints.
const (
	auditSigningKeyPath  = "/audit/signing-key"
	auditCheckpointsPath = "/audit/checkpoints"
)

// Page sizes of the checkpoint list.
const (
	defaultCheckpoints = 100
	maxCheckpoints     = 1000
)

// maxExportRange is the longest time range one export may cover.
const maxExportRange = 366 * 24 * time.Hour

// exportFlushRows is how many rows an export writes between flushes to the client.
const exportFlushRows = 500

// WithAuditSigner makes every audit export carry an export checkpoint signed by s,
// and GET /audit/signing-key serve its public key. It returns a.
func (a *API) WithAuditSigner(s *signing.Signer) *API { a.auditSigner = s; return a }

func (a *API) registerAudit(g *echo.Group) {
	g.GET(auditExportPath, a.exportAudit)
	g.GET(auditSigningKeyPath, a.auditSigningKey)
	g.GET(auditCheckpointsPath, a.listAuditCheckpoints)
	for path, what := range map[string]string{auditExportPath: "the audit export", auditSigningKeyPath: "the audit signing key",
		auditCheckpointsPath: "the audit checkpoints"} {
		g.Match([]string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}, path,
			func(c echo.Context) error {
				c.Response().Header().Set(echo.HeaderAllow, "GET")
				return apierr.New(apierr.MethodNotAllowed, "%s is not allowed on %s", c.Request().Method, what)
			})
	}
}

// auditSigningKey answers GET /audit/signing-key: the public key that verifies the
// audit checkpoints, as a PEM PUBLIC KEY block (the file `portcullis audit verify
// --pubkey` reads), its key id in X-Portcullis-Key-Id.
func (a *API) auditSigningKey(c echo.Context) error {
	if a.auditSigner == nil {
		return apierr.New(apierr.NotFound, "this control plane signs no audit checkpoints")
	}
	c.Response().Header().Set("X-Portcullis-Key-Id", a.auditSigner.KeyID())
	return c.Blob(http.StatusOK, "application/x-pem-file", a.auditSigner.PublicPEM())
}

// listAuditCheckpoints answers GET /audit/checkpoints?region=[&limit=N]: region's
// signed chain checkpoints, newest first.
func (a *API) listAuditCheckpoints(c echo.Context) error {
	rep := &report{}
	region := c.QueryParam("region")
	if region == "" {
		rep.check("region", false, "is required: the region whose checkpoints to list")
	} else {
		rep.check("region", slug.valid(region), slug.message)
	}
	limit := defaultCheckpoints
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		rep.check("limit", err == nil && n >= 1 && n <= maxCheckpoints, "must be an integer from 1 to 1000")
		limit = n
	}
	if err := rep.err(); err != nil {
		return err
	}
	out, err := a.st.AuditCheckpoints(c.Request().Context(), region, limit)
	if err != nil {
		return err
	}
	if out == nil {
		out = []checkpoint.Checkpoint{}
	}
	return c.JSON(http.StatusOK, map[string]any{"data": out})
}

// exportAudit answers GET /audit/export?region=&from=&to=[&client=][&format=]: the
// region's archived events, streamed in seq order as NDJSON or CSV and ended by the
// chain head (see package export). Nothing is buffered beyond a few hundred rows. An
// error before the first bytes went out is an ordinary error answer; after that the
// connection is cut, so the client sees an incomplete download and the file has no
// chain head, which verify rejects.
func (a *API) exportAudit(c echo.Context) error {
	q, format, err := decodeExportQuery(c)
	if err != nil {
		return err
	}
	resp := c.Response()
	h := resp.Header()
	h.Set(echo.HeaderContentType, format.ContentType())
	h.Set(echo.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="audit-%s-%s-%s.%s"`,
		q.Region, q.From.UTC().Format("20060102T150405Z"), q.To.UTC().Format("20060102T150405Z"), format))
	h.Set("Cache-Control", "no-store")

	w := export.NewWriter(resp, format)
	if a.auditSigner != nil {
		w.SignWith(a.auditSigner)
	}
	head, err := a.st.ExportAudit(c.Request().Context(), q, func(r store.AuditRow) error {
		if err := w.Row(export.Row{Seq: r.Seq, PrevHash: r.PrevHash, ChainHash: r.ChainHash, Event: r.Event}); err != nil {
			return err
		}
		if w.Rows()%exportFlushRows == 0 {
			if err := w.Flush(); err != nil {
				return err
			}
			resp.Flush()
		}
		return nil
	})
	if err == nil {
		var client *string
		if q.ClientID != "" {
			client = &q.ClientID
		}
		err = w.Finish(export.Head{Region: q.Region, Seq: head.Seq, Hash: head.Hash, ExportedAt: head.At,
			From: q.From, To: q.To, Client: client})
	}
	if err == nil {
		resp.Flush()
		return nil
	}
	if !resp.Committed {
		h.Del(echo.HeaderContentDisposition)
		return err
	}
	level := a.log.Error
	if errors.Is(err, context.Canceled) {
		level = a.log.Info // the client went away
	}
	level("audit export cut short", "region", q.Region, "rows", w.Rows(),
		"request_id", h.Get(echo.HeaderXRequestID), "err", err)
	panic(http.ErrAbortHandler)
}

// decodeExportQuery reads and validates the export's query, reporting every bad
// parameter in one 422.
func decodeExportQuery(c echo.Context) (store.AuditQuery, export.Format, error) {
	rep := &report{}
	q := store.AuditQuery{Region: c.QueryParam("region"), ClientID: c.QueryParam("client")}
	if q.Region == "" {
		rep.check("region", false, "is required: the region whose archive to export")
	} else {
		rep.check("region", slug.valid(q.Region), slug.message)
	}
	var fromOK, toOK bool
	q.From, fromOK = queryTime(c, rep, "from")
	q.To, toOK = queryTime(c, rep, "to")
	if fromOK && toOK {
		rep.check("to", q.From.Before(q.To), "must be after from")
		rep.check("to", q.To.Sub(q.From) <= maxExportRange, "must be at most 366 days after from")
	}
	rep.check("client", q.ClientID == "" || clientID.valid(q.ClientID), clientID.message)
	format := export.Format(c.QueryParam("format"))
	if format == "" {
		format = export.NDJSON
	}
	ok, msg := oneOf(string(format), export.Formats)
	rep.check("format", ok, msg)
	return q, format, rep.err()
}
