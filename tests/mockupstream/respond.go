package mockupstream

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// writeJSON answers 200 with v. Under FailCutStream it declares the full length but
// sends only the first half before dropping the connection.
func writeJSON(w http.ResponseWriter, v any, fail Failure) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode answer: %w", err)
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if fail == FailCutStream {
		_, _ = w.Write(b[:len(b)/2])
		dropConnection(w, false)
		return errDropped
	}
	if _, err := w.Write(b); err != nil {
		return errDropped
	}
	return nil
}

// decode parses body into v, or returns OpenAI's 400 for bad JSON.
func decode(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return errBadJSON(err)
	}
	return nil
}
