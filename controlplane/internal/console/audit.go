package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/export"
	"github.com/portcullis-gw/portcullis/shared/signing"
)

// maxVerifyBytes bounds an export uploaded to be verified.
const maxVerifyBytes = 1 << 30

// localMinute is the layout of an <input type="datetime-local"> value.
const localMinute = "2006-01-02T15:04"

// audit serves the audit page: the export form, and the form to verify an export.
func (c *Console) audit(ec echo.Context) error {
	now := time.Now().UTC()
	form := map[string]string{"from": now.Add(-24 * time.Hour).Format(localMinute), "to": now.Add(time.Minute).Format(localMinute)}
	return c.auditPage(ec, http.StatusOK, form, nil, nil)
}

func (c *Console) auditPage(ec echo.Context, status int, form, errs map[string]string, result map[string]any) error {
	v := viewerOf(ec)
	if !v.id.Can(adminauth.AuditExport) {
		return c.forbidden(ec, adminauth.AuditExport)
	}
	regions, err := c.regions(ec)
	if err != nil {
		return err
	}
	data := map[string]any{"Regions": regions}
	if res, err := c.call(ec, http.MethodGet, "/audit/signing-key", nil); err == nil && res.status == http.StatusOK {
		data["KeyID"] = res.header.Get("X-Portcullis-Key-Id")
	}
	for k, val := range result {
		data[k] = val
	}
	return c.render(ec, status, "audit", page{Title: "Audit", Data: data, Form: form, Errors: errs})
}

// regions are the regions of the deployments and the residency rules.
func (c *Console) regions(ec echo.Context) ([]string, error) {
	ctx := ec.Request().Context()
	var out []string
	add := func(r string) {
		if r != "" && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	deps, err := c.st.Deployments().List(ctx, "", 1000)
	if err != nil {
		return nil, err
	}
	for _, d := range deps.Items {
		add(d.Entity.Region)
	}
	rules, err := c.st.ResidencyRules().List(ctx, "", 1000)
	if err != nil {
		return nil, err
	}
	for _, r := range rules.Items {
		for _, reg := range r.Entity.AllowedRegions {
			add(reg)
		}
	}
	slices.Sort(out)
	return out, nil
}

// exportAudit checks the export form and sends the browser on to the admin API's
// export, which streams the download with the browser's own session.
func (c *Console) exportAudit(ec echo.Context) error {
	form := formValues(ec, "region", "from", "to", "client", "format")
	errs := map[string]string{}
	if form["region"] == "" {
		errs["region"] = "choose a region"
	}
	from, err := time.Parse(localMinute, form["from"])
	if err != nil {
		errs["from"] = "give a date and time"
	}
	to, err := time.Parse(localMinute, form["to"])
	if err != nil {
		errs["to"] = "give a date and time"
	} else if errs["from"] == "" && !to.After(from) {
		errs["to"] = "must be after from"
	}
	if len(errs) > 0 {
		return c.auditPage(ec, http.StatusUnprocessableEntity, form, errs, nil)
	}
	q := url.Values{"region": {form["region"]}, "from": {from.UTC().Format(time.RFC3339)}, "to": {to.UTC().Format(time.RFC3339)}}
	if form["client"] != "" {
		q.Set("client", form["client"])
	}
	if form["format"] == "csv" {
		q.Set("format", "csv")
	}
	return ec.Redirect(http.StatusSeeOther, "/admin/v1/audit/export?"+q.Encode())
}

// verifyAudit verifies an uploaded export as `portcullis audit verify --pubkey`
// does, against this control plane's audit signing key, and shows the result.
func (c *Console) verifyAudit(ec echo.Context) error {
	now := time.Now().UTC()
	form := map[string]string{"from": now.Add(-24 * time.Hour).Format(localMinute), "to": now.Add(time.Minute).Format(localMinute)}
	fh, err := ec.FormFile("export")
	if err != nil {
		return c.auditPage(ec, http.StatusUnprocessableEntity, form, nil, map[string]any{"VerifyError": "choose an export file to verify"})
	}
	f, err := fh.Open()
	if err != nil {
		return err
	}
	defer f.Close()
	var opts []export.VerifyOption
	res, err := c.call(ec, http.MethodGet, "/audit/signing-key", nil)
	if err != nil {
		return err
	}
	if res.status == http.StatusOK {
		keys, err := signing.ParsePublicKeys(res.body)
		if err != nil {
			return fmt.Errorf("audit signing key: %w", err)
		}
		opts = append(opts, export.WithPublicKeys(keys))
	}
	sum, err := export.Verify(f, opts...)
	if ve, ok := errors.AsType[*export.Error](err); ok {
		return c.auditPage(ec, http.StatusOK, form, nil, map[string]any{"VerifyError": fh.Filename + ": " + ve.Error()})
	}
	if err != nil {
		return c.auditPage(ec, http.StatusOK, form, nil, map[string]any{"VerifyError": fh.Filename + ": " + err.Error()})
	}
	return c.auditPage(ec, http.StatusOK, form, nil, map[string]any{"Verified": describeExport(fh.Filename, sum)})
}

// describeExport is what a verified export holds, in a sentence or two.
func describeExport(name string, s export.Summary) string {
	h := s.Head
	scope := "every client"
	if h.Client != nil {
		scope = "client " + *h.Client
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s export of region %s, %s, from %s to %s, taken %s; %d events", name, s.Format, h.Region, scope,
		h.From.UTC().Format(time.RFC3339), h.To.UTC().Format(time.RFC3339), h.ExportedAt.UTC().Format(time.RFC3339), h.Rows)
	if h.Rows > 0 {
		fmt.Fprintf(&b, " (chain seq %d to %d)", h.FirstSeq, h.LastSeq)
	}
	if s.Linked {
		b.WriteString(", an unbroken piece of the chain")
	}
	if s.ReachesHead {
		b.WriteString(" reaching the region's head")
	}
	switch {
	case s.SignatureChecked && s.Checkpoint != nil:
		fmt.Fprintf(&b, "; the checkpoint is signed by %s, this control plane's key", s.Checkpoint.KeyID)
	case s.Checkpoint != nil:
		b.WriteString("; it has a checkpoint, whose signature was not checked (no signing key here)")
	default:
		b.WriteString("; it has no signed checkpoint")
	}
	return b.String() + "."
}
