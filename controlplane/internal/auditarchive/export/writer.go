package export

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"

	"github.com/portcullis-gw/portcullis/shared/audit"
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
}

// NewWriter returns a writer of an export in format f to w.
func NewWriter(w io.Writer, f Format) *Writer {
	out := &Writer{format: f, buf: bufio.NewWriterSize(w, 64<<10)}
	if f == CSV {
		out.csv = csv.NewWriter(out.buf)
	}
	return out
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
	return nil
}

// Rows is how many rows were written so far.
func (w *Writer) Rows() int64 { return w.rows }

// Finish writes the head, its Rows, FirstSeq and LastSeq taken from the rows
// written, and flushes.
func (w *Writer) Finish(h Head) error {
	h.Rows, h.FirstSeq, h.LastSeq = w.rows, w.firstSeq, w.lastSeq
	h.ExportedAt, h.From, h.To = h.ExportedAt.UTC(), h.From.UTC(), h.To.UTC()
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
