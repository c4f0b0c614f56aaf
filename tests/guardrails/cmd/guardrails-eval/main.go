// Command guardrails-eval scores the guardrail detectors (shared/guardrails) on the
// generated evaluation set and on any labelled files given: precision, recall and
// F1 per family at the item level, and false positives on hard negatives.
//
//	guardrails-eval [-misses] [-write] [file.jsonl[.gz]...]
//
// -write regenerates tests/guardrails/testdata/eval.jsonl.gz.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/portcullis-gw/portcullis/tests/guardrails"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "guardrails-eval:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("guardrails-eval", flag.ContinueOnError)
	misses := fs.Bool("misses", false, "list the items scored wrong (ids only)")
	write := fs.Bool("write", false, "regenerate tests/guardrails/testdata/eval.jsonl.gz")
	if err := fs.Parse(args); err != nil {
		return err
	}
	items := guardrails.Generate(guardrails.EvalSeed, guardrails.EvalPerKind)
	if *write {
		if err := writeSet(filepath.Join("tests", "guardrails", "testdata", "eval.jsonl.gz"), items); err != nil {
			return err
		}
	}
	show := func(name string, items []guardrails.Item) {
		rep := guardrails.Evaluate(items)
		rep.Print(out, name)
		if *misses {
			for _, m := range rep.Misses {
				fmt.Fprintln(out, "   ", m)
			}
		}
	}
	show("generated set (tests/guardrails/testdata/eval.jsonl.gz)", items)
	for _, f := range guardrails.CasesFiles {
		cases, err := guardrails.ReadCases(filepath.Join("tests", "guardrails", f), guardrails.CasesSeed)
		if err != nil {
			return err
		}
		show("hand-written cases (tests/guardrails/"+f+")", cases)
	}
	for _, path := range fs.Args() {
		items, err := guardrails.ReadItems(path)
		if err != nil {
			return err
		}
		show(path, items)
	}
	return nil
}

func writeSet(path string, items []guardrails.Item) error {
	var b bytes.Buffer
	z, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	enc := json.NewEncoder(z)
	for _, it := range items {
		if err := enc.Encode(it); err != nil {
			return err
		}
	}
	if err := z.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}
