package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/signing"
)

// forgeNDJSON rewrites an NDJSON export as someone with the file but not the
// signing key would: it replaces old by new in the event of row index i, recomputes
// that row's chain hash and every later one (prev_hash included), the head's hash
// when the export reaches it, and the head's checkpoint with forge (which may drop
// it), given the forged rows' digest as docs/audit.md defines it. Only the standard
// library: the hashes are plain SHA-256.
func forgeNDJSON(t *testing.T, export string, i int, old, new string, forge func(head map[string]any, rowsDigest string)) string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(export, "\n"), "\n")
	type row struct {
		Seq       int64           `json:"seq"`
		PrevHash  string          `json:"prev_hash"`
		ChainHash string          `json:"chain_hash"`
		Event     json.RawMessage `json:"event"`
	}
	rows := make([]row, len(lines)-1)
	for n, l := range lines[:len(lines)-1] {
		if err := json.Unmarshal([]byte(l), &rows[n]); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Contains(rows[i].Event, []byte(old)) {
		t.Fatalf("row %d has no %q", i, old)
	}
	rows[i].Event = bytes.Replace(rows[i].Event, []byte(old), []byte(new), 1)
	var out strings.Builder
	digest := sha256.New()
	for n := range rows {
		if n > i {
			rows[n].PrevHash = rows[n-1].ChainHash
		}
		if n >= i {
			sum := sha256.Sum256(append([]byte(rows[n].PrevHash), rows[n].Event...))
			rows[n].ChainHash = hex.EncodeToString(sum[:])
		}
		fmt.Fprintf(&out, "{\"seq\":%d,\"prev_hash\":%q,\"chain_hash\":%q,\"event\":%s}\n", rows[n].Seq, rows[n].PrevHash, rows[n].ChainHash, rows[n].Event)
		fmt.Fprintf(digest, "%d %s\n", rows[n].Seq, rows[n].ChainHash)
	}
	var tail struct {
		ChainHead map[string]any `json:"chain_head"`
	}
	dec := json.NewDecoder(strings.NewReader(lines[len(lines)-1]))
	dec.UseNumber()
	if err := dec.Decode(&tail); err != nil {
		t.Fatal(err)
	}
	head := tail.ChainHead
	last := rows[len(rows)-1]
	if head["seq"].(json.Number).String() == fmt.Sprint(last.Seq) {
		head["hash"] = last.ChainHash
	}
	forge(head, hex.EncodeToString(digest.Sum(nil)))
	// The head's fields in the order the control plane writes them.
	var b strings.Builder
	b.WriteString(`{"chain_head":{`)
	for n, k := range []string{"region", "seq", "hash", "exported_at", "from", "to", "client", "rows", "first_seq", "last_seq", "checkpoint"} {
		v, ok := head[k]
		if !ok {
			continue
		}
		if k == "checkpoint" {
			v = asCheckpoint(t, v) // its fields in order, not a map's sorted keys
		}
		enc, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%s", k, enc)
	}
	b.WriteString("}}\n")
	return out.String() + b.String()
}

// checkpointFields puts the checkpoint's JSON fields in the order the control plane
// writes them, so the forged head is byte for byte as exported.
type checkpointFields struct {
	V          json.Number `json:"v"`
	Region     string      `json:"region"`
	Seq        json.Number `json:"seq"`
	ChainHash  string      `json:"chain_hash"`
	At         string      `json:"at"`
	RowsDigest string      `json:"rows_digest"`
	KeyID      string      `json:"key_id"`
	Sig        string      `json:"sig"`
}

func asCheckpoint(t *testing.T, v any) *checkpointFields {
	t.Helper()
	b, _ := json.Marshal(v)
	var c checkpointFields
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

// TestAuditVerifyWithPubkey: the acceptance test of signed checkpoints through the
// CLI. An export verifies with the public key from the data directory and from
// `audit signing-key`; once an event is rewritten and every hash recomputed it
// still passes the plain chain checks when its checkpoint is dropped or patched,
// and fails `audit verify --pubkey` in every case; another key's public key fails
// the untouched export.
func TestAuditVerifyWithPubkey(t *testing.T) {
	a, cfg := controlPlane(t)
	c := cliFor(t, a, cfg)
	t0 := time.Date(2026, 4, 14, 20, 0, 0, 0, time.UTC)
	archive(t, cfg.DatabaseURL, "eu", 12, t0)
	dir := t.TempDir()
	file := filepath.Join(dir, "eu.ndjson")
	c.mustRun("audit", "export", "--region", "eu", "--from", "2026-04-14T00:00:00Z", "--to", "2026-04-15T00:00:00Z", "-o", file)
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}

	pub := filepath.Join(dir, "audit.pub")
	if _, errOut, err := c.run("audit", "signing-key", "-o", pub); err != nil || !strings.Contains(errOut, "ed25519:") {
		t.Fatalf("audit signing-key: %v %s", err, errOut)
	}
	fetched, _ := os.ReadFile(pub)
	beside, err := os.ReadFile(filepath.Join(cfg.DataDir, "audit-signing-key.pub"))
	if err != nil || !bytes.Equal(fetched, beside) {
		t.Fatalf("the served public key differs from the file beside the key: %v", err)
	}
	out := c.mustRun("audit", "verify", "--pubkey", pub, file)
	if !strings.Contains(out, "events: 12, seq 1 to 12") || !strings.Contains(out, "checkpoint: signature verified, key ed25519:") {
		t.Fatalf("verify --pubkey: %s", out)
	}
	if out := c.mustRun("audit", "verify", file); !strings.Contains(out, "checkpoint: NOT CHECKED") {
		t.Fatalf("verify without --pubkey: %s", out)
	}

	other, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	otherPub := filepath.Join(dir, "other.pub")
	if err := os.WriteFile(otherPub, other.PublicPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _, err := c.run("audit", "verify", "--pubkey", otherPub, file); err == nil || out != "" ||
		!strings.Contains(err.Error(), "which is not among the public keys given") {
		t.Fatalf("verify with another key: %q %v", out, err)
	}
	if out := c.mustRun("audit", "verify", "--pubkey", otherPub, "--pubkey", pub, file); !strings.Contains(out, "signature verified") {
		t.Fatalf("verify with a rollover's two keys: %s", out)
	}

	forgeries := []struct {
		name        string
		forge       func(head map[string]any, rowsDigest string)
		plainPasses bool
		reason      string
	}{
		{"checkpoint dropped", func(head map[string]any, _ string) { delete(head, "checkpoint") }, true, "no signed checkpoint"},
		{"checkpoint patched to the new head and rows", func(head map[string]any, rowsDigest string) {
			cp := asCheckpoint(t, head["checkpoint"])
			cp.ChainHash, cp.RowsDigest = head["hash"].(string), rowsDigest
			head["checkpoint"] = cp
		}, true, "signature does not verify"},
		{"checkpoint kept", func(map[string]any, string) {}, false, "not of the chain head"},
	}
	for _, fg := range forgeries {
		t.Run(fg.name, func(t *testing.T) {
			bad := filepath.Join(dir, strings.ReplaceAll(fg.name, " ", "-")+".ndjson")
			if err := os.WriteFile(bad, []byte(forgeNDJSON(t, string(good), 4, `"tokens_in":104`, `"tokens_in":9104`, fg.forge)), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.run("audit", "verify", bad); (err == nil) != fg.plainPasses {
				t.Fatalf("without --pubkey: %v, want passing %v", err, fg.plainPasses)
			}
			out, _, err := c.run("audit", "verify", "--pubkey", pub, bad)
			if err == nil || out != "" || !strings.Contains(err.Error(), "verification failed at line 13: ") || !strings.Contains(err.Error(), fg.reason) {
				t.Fatalf("verify --pubkey of a rewritten export: %q %v; want %q", out, err, fg.reason)
			}
		})
	}

	if out := c.mustRun("audit", "checkpoints", "--region", "eu"); !strings.HasPrefix(strings.TrimSpace(out), "{") || !strings.Contains(out, `"data"`) {
		t.Fatalf("audit checkpoints: %s", out)
	}
	for _, args := range [][]string{
		{"audit", "checkpoints"},
		{"audit", "signing-key", "extra"},
		{"audit", "verify", "--pubkey", "", file},
	} {
		if _, _, err := c.run(args...); err == nil {
			t.Errorf("portcullis %q succeeded", args)
		}
	}
	if _, _, err := c.run("audit", "verify", "--pubkey", filepath.Join(dir, "missing.pub"), file); err == nil || !strings.Contains(err.Error(), "--pubkey") {
		t.Errorf("a missing --pubkey file: %v", err)
	}
}
