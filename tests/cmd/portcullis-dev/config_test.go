package main

import "testing"

// TestDataPlaneURL: the residency rules' endpoints the seed gets are URLs a client on
// this machine can call, whatever the data planes listen on.
func TestDataPlaneURL(t *testing.T) {
	for listen, want := range map[string]string{
		"127.0.0.1:8081": "http://127.0.0.1:8081",
		"localhost:9000": "http://localhost:9000",
		":8082":          "http://127.0.0.1:8082",
		"0.0.0.0:8081":   "http://127.0.0.1:8081",
		"[::]:8081":      "http://[::1]:8081",
		"[::1]:8081":     "http://[::1]:8081",
	} {
		if got := dataPlaneURL(listen); got != want {
			t.Errorf("dataPlaneURL(%q) = %q, want %q", listen, got, want)
		}
	}
}
