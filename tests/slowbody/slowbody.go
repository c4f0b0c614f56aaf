// Package slowbody is a hostile client for tests and benchmarks: it declares a
// large request body and sends it a trickle at a time, as a client holding a
// worker's memory and connections would.
package slowbody

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Declared is the body size a slow request declares: the data plane's default
// body limit, 4 MiB.
const Declared = 4 << 20

// Send opens a connection to addr and sends a chat request with the given bearer
// token, declaring a Declared-byte body; then it sends the body 1 KiB every 50 ms,
// 40 KiB at most, and returns the status code of the answer as text ("401"), or
// what went wrong ("read: …"). A gateway that authenticates before reading the
// body answers long before the body could be complete; one that reads first never
// answers before the connection's 30 s deadline.
func Send(addr, token string) string {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"model\":\"gpt-4o-mini\",\"messages\":[", token, Declared); err != nil {
		return "write: " + err.Error()
	}
	answered := make(chan string, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answered <- "read: " + err.Error()
			return
		}
		resp.Body.Close()
		answered <- strconv.Itoa(resp.StatusCode)
	}()
	chunk := []byte(strings.Repeat(" ", 1024))
	for range 40 {
		select {
		case status := <-answered:
			return status
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := conn.Write(chunk); err != nil {
			break
		}
	}
	return <-answered
}
