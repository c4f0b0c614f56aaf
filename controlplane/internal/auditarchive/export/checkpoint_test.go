package export

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/chain"
	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/checkpoint"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/signing"
)

func newSigner(t *testing.T) *signing.Signer {
	t.Helper()
	s, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func keysOf(t *testing.T, signers ...*signing.Signer) *signing.Verifier {
	t.Helper()
	var pems []byte
	for _, s := range signers {
		pems = append(pems, s.PublicPEM()...)
	}
	v, err := signing.ParsePublicKeys(pems)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// writeSigned exports rows as the archive does, signed by s, with the region's head
// at head, taken at a time with sub-microsecond digits (cut on signing).
func writeSigned(t *testing.T, f Format, region string, rows []Row, head Row, client *string, s *signing.Signer) string {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, f).SignWith(s)
	for _, r := range rows {
		if err := w.Row(r); err != nil {
			t.Fatal(err)
		}
	}
	h := Head{Region: region, Seq: head.Seq, Hash: head.ChainHash, ExportedAt: t0.Add(2*time.Hour + 1234567*time.Nanosecond),
		From: from, To: to, Client: client}
	if head.Seq == 0 {
		h.Hash = chain.Genesis(region)
	}
	if err := w.Finish(h); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// headOf parses the head of an export.
func headOf(t *testing.T, export string) Head {
	t.Helper()
	ls := lines(export)
	h, err := ParseHead([]byte(ls[len(ls)-1]))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestSignedExportsVerifyWithTheKey(t *testing.T) {
	s, next := newSigner(t), newSigner(t)
	rows := archive(t, "eu", 20, 3)
	client := "client-1"
	var ofClient []Row
	for _, r := range rows {
		if e, _ := audit.Decode(r.Event); e.ClientID == client {
			ofClient = append(ofClient, r)
		}
	}
	tests := []struct {
		name   string
		rows   []Row
		head   Row
		client *string
	}{
		{"whole chain", rows, rows[19], nil},
		{"a middle piece", rows[5:12], rows[19], nil},
		{"one client", ofClient, rows[19], &client},
		{"nothing", nil, rows[19], nil},
		{"empty region", nil, Row{}, nil},
	}
	for _, f := range []Format{NDJSON, CSV} {
		for _, tc := range tests {
			t.Run(string(f)+"/"+tc.name, func(t *testing.T) {
				out := writeSigned(t, f, "eu", tc.rows, tc.head, tc.client, s)
				sum, err := Verify(strings.NewReader(out), WithPublicKeys(keysOf(t, next, s))) // a rollover's two keys
				if err != nil {
					t.Fatalf("a signed export does not verify with its key: %v", err)
				}
				cp := sum.Checkpoint
				if !sum.SignatureChecked || cp == nil || cp.KeyID != s.KeyID() || cp.Seq != sum.Head.Seq || cp.ChainHash != sum.Head.Hash ||
					!cp.At.Equal(sum.Head.ExportedAt) || sum.Head.ExportedAt.Nanosecond()%1000 != 0 {
					t.Fatalf("summary %+v, checkpoint %+v", sum, cp)
				}
				// Without keys it verifies as before, saying the signature was not checked.
				sum, err = verify(out)
				if err != nil || sum.SignatureChecked || sum.Checkpoint == nil {
					t.Fatalf("without keys: %+v %v", sum, err)
				}
			})
		}
	}
}

// rehash recomputes the chain hash of rows[i:] and every later link, as someone who
// rewrote an event would, and returns the rows.
func rehash(rows []Row, i int, linked bool) []Row {
	for ; i < len(rows); i++ {
		if linked && i > 0 {
			rows[i].PrevHash = rows[i-1].ChainHash
		}
		rows[i].ChainHash = chain.Link(rows[i].PrevHash, rows[i].Event)
		if !linked {
			break // a client's rows are not linked to each other
		}
	}
	return rows
}

// rewrite is what a forger does to a signed export: it changes tokens_in of the
// event at index i to 999999, recomputes the chain from there, writes the file
// again (same format, head, range and client) and lets forge change the head's
// checkpoint.
func rewrite(t *testing.T, f Format, good string, rows []Row, i int, forge func(h *Head, rowsDigest string)) string {
	t.Helper()
	h := headOf(t, good)
	rows = append([]Row(nil), rows...)
	e, err := audit.Decode(rows[i].Event)
	if err != nil {
		t.Fatal(err)
	}
	e.TokensIn = 999999
	if rows[i].Event, err = chain.Canonical(e); err != nil {
		t.Fatal(err)
	}
	rows = rehash(rows, i, h.Client == nil)
	if last := rows[len(rows)-1]; last.Seq == h.Seq {
		h.Hash = last.ChainHash // the head too, so the plain chain verifies
	}
	var buf bytes.Buffer
	w := NewWriter(&buf, f)
	for _, r := range rows {
		if err := w.Row(r); err != nil {
			t.Fatal(err)
		}
	}
	if h.Checkpoint != nil {
		cp := *h.Checkpoint
		h.Checkpoint = &cp
	}
	forge(&h, w.RowsDigest())
	if err := w.Finish(h); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestRewrittenAndRehashedExportsFail is the acceptance test of signed checkpoints:
// an export whose events are rewritten and whose chain is recomputed passes the
// plain chain checks, and fails verify with the control plane's public key however
// the forger treats the checkpoint; the untouched export passes.
func TestRewrittenAndRehashedExportsFail(t *testing.T) {
	s, forger := newSigner(t), newSigner(t)
	keys := keysOf(t, s)
	rows := archive(t, "eu", 10, 2)
	client := "client-0"
	var ofClient []Row
	for _, r := range rows {
		if e, _ := audit.Decode(r.Event); e.ClientID == client {
			ofClient = append(ofClient, r)
		}
	}
	forgeries := []struct {
		name string
		// forge changes the rewritten export's head; its checkpoint is the signed one.
		forge func(h *Head, rowsDigest string)
		// plainPasses: the file passes Verify without keys.
		plainPasses bool
		reason      string // part of the reason with keys
	}{
		{"checkpoint left as signed", func(h *Head, _ string) {}, false, ""},
		{"checkpoint removed", func(h *Head, _ string) { h.Checkpoint = nil }, true, "no signed checkpoint"},
		{"checkpoint's hash and digest updated", func(h *Head, d string) {
			h.Checkpoint.ChainHash, h.Checkpoint.RowsDigest = h.Hash, d
		}, true, "signature does not verify"},
		{"checkpoint re-signed with the forger's key", func(h *Head, d string) {
			cp := checkpoint.SignExport(forger, h.Region, h.Seq, h.Hash, h.ExportedAt, ExportScope(*h, d))
			h.Checkpoint = &cp
		}, true, "not among the public keys given"},
		{"checkpoint's key id changed to the forger's", func(h *Head, d string) {
			h.Checkpoint.ChainHash, h.Checkpoint.RowsDigest, h.Checkpoint.KeyID = h.Hash, d, forger.KeyID()
		}, true, "not among the public keys given"},
	}
	scopes := []struct {
		name   string
		rows   []Row
		head   Row
		client *string
		at     int // index of the rewritten row
	}{
		{"whole chain", rows, rows[9], nil, 3},
		{"a piece before the head", rows[2:7], rows[9], nil, 1},
		{"one client", ofClient, rows[9], &client, 2},
	}
	for _, f := range []Format{NDJSON, CSV} {
		for _, sc := range scopes {
			good := writeSigned(t, f, "eu", sc.rows, sc.head, sc.client, s)
			if _, err := Verify(strings.NewReader(good), WithPublicKeys(keys)); err != nil {
				t.Fatalf("%s/%s: the untouched export fails: %v", f, sc.name, err)
			}
			for _, fg := range forgeries {
				t.Run(string(f)+"/"+sc.name+"/"+fg.name, func(t *testing.T) {
					bad := rewrite(t, f, good, sc.rows, sc.at, fg.forge)
					if bad == good || !strings.Contains(bad, "999999") {
						t.Fatal("the rewrite changed nothing")
					}
					if _, err := verify(bad); (err == nil) != fg.plainPasses {
						t.Fatalf("without keys: err %v, want passing %v", err, fg.plainPasses)
					}
					_, err := Verify(strings.NewReader(bad), WithPublicKeys(keys))
					ve, ok := errors.AsType[*Error](err)
					if !ok {
						t.Fatalf("with the public key: err %v, want an *Error", err)
					}
					if want := len(lines(bad)); ve.Line != want || !strings.Contains(ve.Reason, fg.reason) {
						t.Fatalf("got %q, want line %d with %q", ve, want, fg.reason)
					}
				})
			}
		}
	}
}

// TestCheckpointOfAnUnknownKeyFails: an export signed by another control plane (or
// its previous key, no longer given) fails; given both keys, it passes.
func TestCheckpointOfAnUnknownKeyFails(t *testing.T) {
	s, other := newSigner(t), newSigner(t)
	rows := archive(t, "eu", 4, 1)
	out := writeSigned(t, NDJSON, "eu", rows, rows[3], nil, other)
	_, err := Verify(strings.NewReader(out), WithPublicKeys(keysOf(t, s)))
	if err == nil || !strings.Contains(err.Error(), "signed with key "+other.KeyID()+", which is not among the public keys given ("+s.KeyID()+")") {
		t.Fatalf("a checkpoint of an unknown key: %v", err)
	}
	if _, err := Verify(strings.NewReader(out), WithPublicKeys(keysOf(t, s, other))); err != nil {
		t.Fatalf("with both keys: %v", err)
	}
}

// TestEditedSignedHeadsFail: a signed export's head cannot be changed, even where
// the chain checks would not notice (the range, the client filter), and an unsigned
// export fails with keys.
func TestEditedSignedHeadsFail(t *testing.T) {
	s := newSigner(t)
	keys := keysOf(t, s)
	rows := archive(t, "eu", 6, 1)
	good := writeSigned(t, NDJSON, "eu", rows, rows[5], nil, s)
	h := headOf(t, good)
	edits := map[string]struct {
		old, new, reason string
	}{
		"range narrowed":  {`"from":"` + from.Format(time.RFC3339Nano) + `"`, `"from":"` + from.Add(time.Minute).Format(time.RFC3339Nano) + `"`, "signature does not verify"},
		"exported_at":     {`"exported_at":"2026`, `"exported_at":"2027`, "time is not the export's exported_at"},
		"checkpoint seq":  {`"seq":6,"chain_hash"`, `"seq":7,"chain_hash"`, "not of the chain head"},
		"sig":             {`"sig":"` + base64.StdEncoding.EncodeToString(h.Checkpoint.Sig)[:4], `"sig":"AAAA`, "signature does not verify"},
		"checkpoint kind": {`"rows_digest":"` + h.Checkpoint.RowsDigest + `",`, ``, "a chain checkpoint, not an export's"},
	}
	for name, e := range edits {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(good, e.old) {
				t.Fatalf("the export has no %q", e.old)
			}
			bad := strings.Replace(good, e.old, e.new, 1)
			if _, err := Verify(strings.NewReader(bad), WithPublicKeys(keys)); err == nil || !strings.Contains(err.Error(), e.reason) {
				t.Fatalf("err %v, want %q", err, e.reason)
			}
		})
	}
	unsigned := write(t, NDJSON, "eu", rows, rows[5], nil)
	if _, err := Verify(strings.NewReader(unsigned), WithPublicKeys(keys)); err == nil || !strings.Contains(err.Error(), "no signed checkpoint") {
		t.Fatalf("an unsigned export with keys: %v", err)
	}
	if sum, err := verify(unsigned); err != nil || sum.Checkpoint != nil || sum.SignatureChecked {
		t.Fatalf("an unsigned export without keys: %+v %v", sum, err)
	}
}
