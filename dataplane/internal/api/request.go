package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// request is a client's request: its body, of which only model and stream are
// interpreted (every other field is kept verbatim and forwarded), and the endpoint
// it came to.
type request struct {
	Model  string
	Stream bool
	fields map[string]json.RawMessage

	api  clientAPI // the API family the client speaks
	op   string    // the operation, policy.Op*
	path string    // the endpoint the client called, upstream.Path*
	// askedUsage: the client's stream_options.include_usage (see prepareStream).
	askedUsage bool
	// choices is how many completions the request asks for (see requestChoices);
	// 1 for embeddings.
	choices int64
}

// bodyReadTimeout bounds reading a request body, so a client trickling bytes cannot
// hold a worker. (The server sets no ReadTimeout: it would also cut long streams.)
const bodyReadTimeout = time.Minute

// maxPresize bounds how much of a declared Content-Length readBody allocates before
// the bytes arrive.
const maxPresize = 64 << 10

// readBody reads the whole body, refusing more than limit bytes with 413.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, apierr.New(apierr.BodyTooLarge, "the request body is larger than %d bytes", limit)
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	var buf bytes.Buffer
	if r.ContentLength > 0 { // pre-sized, but only so far: the declared length is the client's word
		buf.Grow(int(min(r.ContentLength, maxPresize)))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, apierr.New(apierr.BodyTooLarge, "the request body is larger than %d bytes", limit)
	case err != nil:
		return nil, apierr.Wrap(apierr.InvalidRequest, err, "the request body could not be read")
	}
	return buf.Bytes(), nil
}

// MaxModelBytes bounds the model a request names: longer is a 400, and a name
// that long never reaches a log line or an audit event.
const MaxModelBytes = 256

// decodeRequest parses body as a JSON object with a non-empty string "model" and an
// optional boolean "stream". Errors are 400s.
func decodeRequest(body []byte) (*request, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		e := apierr.New(apierr.InvalidJSON, "the request body must be a JSON object")
		e.Cause = err
		return nil, e
	}
	r := &request{fields: fields}
	raw, ok := fields["model"]
	if !ok {
		return nil, paramError("model", "you must provide a model parameter")
	}
	if err := json.Unmarshal(raw, &r.Model); err != nil || strings.TrimSpace(r.Model) == "" {
		return nil, paramError("model", "model must be a non-empty string")
	}
	if len(r.Model) > MaxModelBytes {
		r.Model = ""
		return nil, paramError("model", fmt.Sprintf("model must be at most %d bytes", MaxModelBytes))
	}
	if raw, ok := fields["stream"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &r.Stream); err != nil {
			return nil, paramError("stream", "stream must be a boolean")
		}
	}
	return r, nil
}

func paramError(param, msg string) *apierr.Error {
	e := apierr.New(apierr.InvalidRequest, "%s", msg)
	e.Param = param
	return e
}

// withModel returns the body to send upstream: the client's fields with "model"
// replaced by upstreamModel. HTML characters are not escaped, so the client's text
// reaches the upstream byte for byte. The output is what encoding/json's Encoder
// (with SetEscapeHTML(false)) makes of the fields as a map: keys sorted, each value
// compacted. It is written directly, without the Encoder's reflection.
func (r *request) withModel(upstreamModel string) ([]byte, error) {
	model, err := json.Marshal(upstreamModel)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(r.fields)+1)
	size := len(model) + len(`{"model":}`)
	for k, v := range r.fields {
		if k != "model" {
			keys = append(keys, k)
			size += len(k) + len(v) + len(`,"":`)
		}
	}
	keys = append(keys, "model")
	slices.Sort(keys)

	buf := bytes.NewBuffer(make([]byte, 0, size))
	buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		if err := writeKey(buf, k); err != nil {
			return nil, err
		}
		buf.WriteByte(':')
		if k == "model" {
			buf.Write(model)
			continue
		}
		if err := json.Compact(buf, r.fields[k]); err != nil {
			return nil, err
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// writeKey writes k as a JSON string the way the Encoder does without HTML
// escaping. Keys of printable ASCII other than '"' and '\\', the usual case, are
// written as they are; any other key goes through the Encoder.
func writeKey(buf *bytes.Buffer, k string) error {
	plain := true
	for i := 0; i < len(k) && plain; i++ {
		c := k[i]
		plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\'
	}
	if plain {
		buf.WriteByte('"')
		buf.WriteString(k)
		buf.WriteByte('"')
		return nil
	}
	var quoted bytes.Buffer
	enc := json.NewEncoder(&quoted)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(k); err != nil {
		return err
	}
	buf.Write(bytes.TrimSuffix(quoted.Bytes(), []byte("\n")))
	return nil
}
