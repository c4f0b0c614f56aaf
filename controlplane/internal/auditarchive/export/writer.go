package export

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/checkpoint"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/signing"
)

// Writer writes one export: rows in seq order, then the head. It buffers; Flush
// pushes what it holds to the underlying writer. A Writer is not safe for concurrent
// use.
type Writer struct {
	format Format
	buf    *bufio.Writer
	csv    *csv.Writer // CSV only
	line   []byte      // NDJSON only: reused line buffer

	rows              int64
	firstSeq, lastSeq int64
	headerDone        bool

	digest *checkpoint.Digest // of the rows written
	signer *signing.Signer    // nil: Finish signs no checkpoint
}

// NewWriter returns a writer of an export in format f to w.
func NewWriter(w io.Writer, f Format) *Writer {
	out := &Writer{format: f, buf: bufio.NewWriterSize(w, 64<<10), digest: checkpoint.NewDigest()}
	if f == CSV {
		out.csv = csv.NewWriter(out.buf)
	}
	return out
}

// SignWith makes Finish put in the head the export checkpoint signed by s. It returns
// w.
func (w *Writer) SignWith(s *signing.Signer) *Writer {
	w.signer = s
	return w
}

// Row writes one event. Rows must come in increasing seq order.
func (w *Writer) Row(r Row) error {
	if w.format == CSV {
		if err := w.header(); err != nil {
			return err
		}
		e, err := audit.Decode(r.Event)
		if err != nil {
			return fmt.Errorf("archived event %d: %w", r.Seq, err)
		}
		if err := w.csv.Write(csvRecord(r, e)); err != nil {
			return fmt.Errorf("write export: %w", err)
		}
	} else {
		w.line = append(appendRowLine(w.line[:0], r), '\n')
		if _, err := w.buf.Write(w.line); err != nil {
			return fmt.Errorf("write export: %w", err)
		}
	}
	if w.rows == 0 {
		w.firstSeq = r.Seq
	}
	w.rows++
	w.lastSeq = r.Seq
	w.digest.Add(r.Seq, r.ChainHash)
	return nil
}

// Rows is how many rows were written so far.
func (w *Writer) Rows() int64 { return w.rows }

// RowsDigest is the checkpoint digest (checkpoint.Digest) of the rows written so far.
func (w *Writer) RowsDigest() string { return w.digest.Sum() }

// Finish writes the head, its Rows, FirstSeq and LastSeq taken from the rows
// written, and flushes. With a signer (SignWith) the head's Checkpoint is the export
// checkpoint of h and the rows, and ExportedAt is cut to checkpoint.Precision;
// without one, h.Checkpoint is written as given.
func (w *Writer) Finish(h Head) error {
	h.Rows, h.FirstSeq, h.LastSeq = w.rows, w.firstSeq, w.lastSeq
	h.ExportedAt, h.From, h.To = h.ExportedAt.UTC(), h.From.UTC(), h.To.UTC()
	if w.signer != nil {
		h.ExportedAt = h.ExportedAt.Truncate(checkpoint.Precision)
		cp := checkpoint.SignExport(w.signer, h.Region, h.Seq, h.Hash, h.ExportedAt, ExportScope(h, w.RowsDigest()))
		h.Checkpoint = &cp
	}
	head, err := marshalHead(h)
	if err != nil {
		return err
	}
	if w.format == CSV {
		if err := w.header(); err != nil {
			return err
		}
		if err := w.csv.Write([]string{csvHeadMarker, string(head)}); err != nil {
			return fmt.Errorf("write export: %w", err)
		}
	} else {
		w.line = append(append(append(w.line[:0], `{"chain_head":`...), head...), "}\n"...)
		if _, err := w.buf.Write(w.line); err != nil {
			return fmt.Errorf("write export: %w", err)
		}
	}
	return w.Flush()
}

// Flush writes everything buffered to the underlying writer.
func (w *Writer) Flush() error {
	if w.csv != nil {
		w.csv.Flush()
		if err := w.csv.Error(); err != nil {
			return fmt.Errorf("write export: %w", err)
		}
	}
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("write export: %w", err)
	}
	return nil
}

func (w *Writer) header() error {
	if w.headerDone {
		return nil
	}
	w.headerDone = true
	if err := w.csv.Write(csvColumns); err != nil {
		return fmt.Errorf("write export: %w", err)
	}
	return nil
}

// ExportScope is what the checkpoint of an export with head h and rows of digest
// rowsDigest signs beyond the chain head.
func ExportScope(h Head, rowsDigest string) checkpoint.Export {
	e := checkpoint.Export{From: h.From, To: h.To, RowsDigest: rowsDigest}
	if h.Client != nil {
		e.Client = *h.Client
	}
	return e
}
