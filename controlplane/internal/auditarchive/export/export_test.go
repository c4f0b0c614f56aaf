package export

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/chain"
	"github.com/portcullis-gw/portcullis/shared/audit"
)

var (
	t0   = time.Date(2026, 4, 14, 20, 0, 0, 0, time.UTC)
	from = t0.Add(-time.Hour)
	to   = t0.Add(time.Hour)
)

// archive chains n events of region from seq 1, client i%clients, one second apart.
func archive(t *testing.T, region string, n, clients int) []Row {
	t.Helper()
	prev := chain.Genesis(region)
	var rows []Row
	for i := range n {
		code := "rate_limited"
		e := audit.Event{TS: t0.Add(time.Duration(i) * time.Second), RequestID: fmt.Sprintf("req-%d", i), Region: region,
			Worker: "eu-1", ClientID: fmt.Sprintf("client-%d", i%clients), Operation: "chat", Model: "gpt-4o",
			Provider: "openai", Deployment: "openai-eu", TokensIn: int64(10 + i), TokensOut: 5, Status: 200,
			Headers: map[string]string{"x-request-id": fmt.Sprintf("req-%d", i)}}
		if i%3 == 2 {
			e.Status, e.ErrorCode = 429, &code
		}
		b, err := chain.Canonical(e)
		if err != nil {
			t.Fatal(err)
		}
		h := chain.Link(prev, b)
		rows = append(rows, Row{Seq: int64(i + 1), PrevHash: prev, ChainHash: h, Event: b})
		prev = h
	}
	return rows
}

// write exports rows as the archive would, with the head at headSeq.
func write(t *testing.T, f Format, region string, rows []Row, head Row, client *string) string {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, f)
	for _, r := range rows {
		if err := w.Row(r); err != nil {
			t.Fatal(err)
		}
	}
	h := Head{Region: region, Seq: head.Seq, Hash: head.ChainHash, ExportedAt: t0.Add(2 * time.Hour), From: from, To: to, Client: client}
	if head.Seq == 0 {
		h.Hash = chain.Genesis(region)
	}
	if err := w.Finish(h); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func verify(s string) (Summary, error) { return Verify(strings.NewReader(s)) }

// lines splits an export into its lines (without the final newline).
func lines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

func join(ls []string) string { return strings.Join(ls, "\n") + "\n" }

func TestFreshExportsVerify(t *testing.T) {
	rows := archive(t, "eu", 20, 3)
	client := "client-1"
	var ofClient []Row
	for _, r := range rows {
		if e, _ := audit.Decode(r.Event); e.ClientID == client {
			ofClient = append(ofClient, r)
		}
	}
	tests := []struct {
		name        string
		rows        []Row
		head        Row
		client      *string
		reachesHead bool
	}{
		{"whole chain", rows, rows[19], nil, true},
		{"a middle piece", rows[5:12], rows[19], nil, false},
		{"one client, whose event is the head", ofClient, rows[19], &client, true},
		{"one client, not at the head", ofClient[:len(ofClient)-1], rows[18], &client, false},
		{"nothing", nil, rows[19], nil, false},
		{"empty region", nil, Row{}, nil, false},
	}
	for _, f := range []Format{NDJSON, CSV} {
		for _, tc := range tests {
			t.Run(string(f)+"/"+tc.name, func(t *testing.T) {
				sum, err := verify(write(t, f, "eu", tc.rows, tc.head, tc.client))
				if err != nil {
					t.Fatalf("a fresh export does not verify: %v", err)
				}
				if sum.Format != f || sum.Head.Rows != int64(len(tc.rows)) || sum.ReachesHead != tc.reachesHead || sum.Linked != (tc.client == nil) {
					t.Fatalf("summary %+v", sum)
				}
			})
		}
	}
}

func TestOneLineCanBeCheckedByHand(t *testing.T) {
	rows := archive(t, "eu", 2, 1)
	// printf '%s%s' "$prev_hash" "$event_json" | sha256sum
	if got := chain.Link(rows[1].PrevHash, rows[1].Event); got != rows[1].ChainHash || rows[0].PrevHash != chain.Genesis("eu") {
		t.Fatal("chain hashes are not SHA-256 over the hex previous hash and the event")
	}
	if chain.Genesis("eu") == chain.Genesis("us") {
		t.Fatal("regions share a genesis hash")
	}
}

func TestTamperedExportsFail(t *testing.T) {
	rows := archive(t, "eu", 10, 2)
	client := "client-0"
	var ofClient []Row
	for _, r := range rows {
		if e, _ := audit.Decode(r.Event); e.ClientID == client {
			ofClient = append(ofClient, r)
		}
	}
	type tamper func(ls []string) []string
	remove := func(i int) tamper {
		return func(ls []string) []string { return append(ls[:i:i], ls[i+1:]...) }
	}
	swap := func(i int) tamper {
		return func(ls []string) []string { ls[i], ls[i+1] = ls[i+1], ls[i]; return ls }
	}
	replace := func(i int, old, new string) tamper {
		return func(ls []string) []string {
			if !strings.Contains(ls[i], old) {
				panic(fmt.Sprintf("line %d has no %q: %s", i, old, ls[i]))
			}
			ls[i] = strings.Replace(ls[i], old, new, 1)
			return ls
		}
	}
	cut := func(ls []string) []string { return ls[:len(ls)-1] }
	// NDJSON lines: rows 0..9, head 10. CSV: header 0, rows 1..10, head 11.
	tests := []struct {
		name     string
		format   Format
		filtered bool
		tamper   tamper
		line     int    // the line Verify must name (1-based)
		reason   string // part of its reason
	}{
		{"ndjson: changed field", NDJSON, false, replace(3, `"tokens_in":13`, `"tokens_in":1`), 4, "edited"},
		{"ndjson: changed status", NDJSON, false, replace(2, `"status":429`, `"status":200`), 3, "edited"},
		{"ndjson: removed middle line", NDJSON, false, remove(4), 5, "missing"},
		{"ndjson: removed first line", NDJSON, false, remove(0), 10, "removed"},
		{"ndjson: removed last row", NDJSON, false, remove(9), 10, "removed"},
		{"ndjson: swapped pair", NDJSON, false, swap(6), 7, "missing"},
		{"ndjson: swapped pair, filtered", NDJSON, true, swap(1), 3, "out of order"},
		{"ndjson: removed line, filtered", NDJSON, true, remove(2), 5, "removed"},
		{"ndjson: changed field, filtered", NDJSON, true, replace(0, `"model":"gpt-4o"`, `"model":"gpt-4"`), 1, "edited"},
		{"ndjson: added field", NDJSON, false, replace(1, `{"seq":2,`, `{"seq":2,"note":"x",`), 2, "not as exported"},
		{"ndjson: cut short", NDJSON, false, cut, 10, "cut short"},
		{"ndjson: head edited", NDJSON, false, replace(10, `"rows":10`, `"rows":11`), 11, "removed or added"},
		{"ndjson: head hash edited", NDJSON, false, replace(10, `"hash":"`, `"hash":"0`), 11, "edited"},
		{"csv: changed column", CSV, false, replace(4, ",gpt-4o,", ",gpt-4,"), 5, "column model"},
		{"csv: changed event_json", CSV, false, replace(4, `""tokens_in"":13`, `""tokens_in"":1`), 5, "edited"},
		{"csv: removed middle line", CSV, false, remove(5), 6, "missing"},
		{"csv: removed first row", CSV, false, remove(1), 11, "removed"},
		{"csv: swapped pair", CSV, false, swap(3), 4, "missing"},
		{"csv: swapped pair, filtered", CSV, true, swap(2), 4, "out of order"},
		{"csv: cut short", CSV, false, cut, 11, "cut short"},
		{"csv: header changed", CSV, false, replace(0, "seq,ts", "seq,time"), 1, "header"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c *string
			src := rows
			if tc.filtered {
				c, src = &client, ofClient
			}
			good := write(t, tc.format, "eu", src, rows[9], c)
			if _, err := verify(good); err != nil {
				t.Fatalf("the untampered export fails: %v", err)
			}
			_, err := verify(join(tc.tamper(lines(good))))
			ve, ok := errors.AsType[*Error](err)
			if !ok {
				t.Fatalf("tampered export: err %v, want an *Error", err)
			}
			if ve.Line != tc.line || !strings.Contains(ve.Reason, tc.reason) {
				t.Fatalf("got %q, want line %d with %q", ve, tc.line, tc.reason)
			}
		})
	}
}

func TestEventsOfAnotherRegionOrClientFail(t *testing.T) {
	eu, us := archive(t, "eu", 3, 1), archive(t, "us", 3, 1)
	// us rows under an eu head: the first row's region is wrong.
	out := write(t, NDJSON, "us", us, us[2], nil)
	out = strings.Replace(out, `"region":"us","seq"`, `"region":"eu","seq"`, 1)
	if _, err := verify(out); err == nil || !strings.Contains(err.Error(), `region "us" in an export of region "eu"`) {
		t.Fatalf("us rows in an eu export: %v", err)
	}
	other := "client-9"
	if _, err := verify(write(t, NDJSON, "eu", eu, eu[2], &other)); err == nil || !strings.Contains(err.Error(), `client "client-0"`) {
		t.Fatalf("another client's rows in a client export: %v", err)
	}
}

func TestSpreadsheetFormulasAreDefused(t *testing.T) {
	e := audit.Event{TS: t0, RequestID: "r1", Region: "eu", ClientID: "c", Model: "=HYPERLINK(\"x\")", Status: 404}
	b, _ := chain.Canonical(e)
	r := Row{Seq: 1, PrevHash: chain.Genesis("eu"), Event: b}
	r.ChainHash = chain.Link(r.PrevHash, b)
	out := write(t, CSV, "eu", []Row{r}, r, nil)
	if !strings.Contains(out, `,"'=HYPERLINK(""x"")",`) {
		t.Fatalf("formula cell not defused: %s", out)
	}
	if _, err := verify(out); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(`{"seq":1,"prev_hash":"x","chain_hash":"y","event":{}}` + "\n")
	f.Add("seq,ts\n# chain_head,{}\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		sum, err := verify(s)
		if err == nil && sum.Head.Region == "" {
			t.Fatalf("accepted %q without a region", s)
		}
	})
}
