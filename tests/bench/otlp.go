package main

import (
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// otlpSink is a stand-in OpenTelemetry collector for the traced data plane: it
// takes OTLP/HTTP trace exports, counts them and their bytes, and answers each with
// an empty ExportTraceServiceResponse (a protobuf message with no fields is no
// bytes), as a collector that kept every span does.
type otlpSink struct {
	srv               *http.Server
	addr              string
	exports, received atomic.Int64
}

func startOTLPSink() (*otlpSink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &otlpSink{addr: l.Addr().String()}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
			http.NotFound(w, r)
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		s.exports.Add(1)
		s.received.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = s.srv.Serve(l) }()
	return s, nil
}

// URL is the sink's base URL, the traced data plane's OTEL_EXPORTER_OTLP_ENDPOINT.
func (s *otlpSink) URL() string { return "http://" + s.addr }

// Exports and Bytes are the trace exports received so far and their body bytes.
func (s *otlpSink) Exports() int64 { return s.exports.Load() }
func (s *otlpSink) Bytes() int64   { return s.received.Load() }

func (s *otlpSink) Close() { _ = s.srv.Close() }
