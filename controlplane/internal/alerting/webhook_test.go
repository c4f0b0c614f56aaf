package alerting

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/logtest"
)

var testSecret = []byte("webhook-test-secret-0123456789")

// receiver is a webhook endpoint on loopback that records every request.
type receiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	headers []http.Header
	bodies  [][]byte
}

func newReceiver(t *testing.T, answer http.HandlerFunc) *receiver {
	t.Helper()
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.headers, r.bodies = append(r.headers, req.Header.Clone()), append(r.bodies, body)
		r.mu.Unlock()
		if answer != nil {
			answer(w, req)
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

// deliver sends one alert through a webhooks with the real client and waits until
// its delivery, retries included, ended.
func deliver(t *testing.T, allowPrivate bool, target string) *logtest.Buffer {
	t.Helper()
	logs := &logtest.Buffer{}
	w := newWebhooks(newWebhookClient(allowPrivate), testSecret, slog.New(slog.NewJSONHandler(logs, nil)))
	w.backoff = 10 * time.Millisecond
	w.send(target, "alert-1", []byte(`{"version":1,"id":"alert-1","kind":"test"}`))
	w.wg.Wait()
	w.close()
	return logs
}

// TestWebhookSignatureCoversTheDestination: the documented signed string, computed by
// hand, gives the header the webhook sends; another URL, timestamp or body does not
// verify.
func TestWebhookSignatureCoversTheDestination(t *testing.T) {
	rcv := newReceiver(t, nil)
	target := rcv.srv.URL + "/hooks/portcullis?team=sec"
	deliver(t, true, target)
	if rcv.count() != 1 {
		t.Fatalf("%d deliveries, want 1", rcv.count())
	}
	h, body := rcv.headers[0], rcv.bodies[0]
	ts, err := strconv.ParseInt(h.Get(HeaderTimestamp), 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
		t.Fatalf("timestamp header %q", h.Get(HeaderTimestamp))
	}
	m := hmac.New(sha256.New, testSecret)
	m.Write([]byte("v2:" + h.Get(HeaderTimestamp) + ":" + target + ":" + string(body)))
	want := "v2=" + hex.EncodeToString(m.Sum(nil))
	if got := h.Get(HeaderSignature); got != want {
		t.Fatalf("signature %q, want %q (HMAC-SHA-256 of v2:<ts>:<url>:<body>)", got, want)
	}
	if h.Get(HeaderAlertID) != "alert-1" || h.Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", h)
	}
	if !Verify(testSecret, ts, target, body, want) {
		t.Fatal("Verify refuses the signature")
	}
	for name, ok := range map[string]bool{
		"another URL":       Verify(testSecret, ts, rcv.srv.URL+"/elsewhere", body, want),
		"another timestamp": Verify(testSecret, ts+1, target, body, want),
		"another body":      Verify(testSecret, ts, target, append(body, ' '), want),
		"another secret":    Verify([]byte("another-secret-0123456789"), ts, target, body, want),
	} {
		if ok {
			t.Errorf("the signature verifies with %s", name)
		}
	}
}

// TestWebhookDoesNotFollowRedirects: an endpoint answering 307 gets its POST (and the
// retries of a failed delivery), and the redirect's target gets nothing.
func TestWebhookDoesNotFollowRedirects(t *testing.T) {
	target := newReceiver(t, nil)
	for _, status := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			hook := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target.srv.URL+"/stolen", status)
			})
			logs := deliver(t, true, hook.srv.URL)
			if n := target.count(); n != 0 {
				t.Fatalf("the redirect target got %d requests, want 0", n)
			}
			if n := hook.count(); n != webhookAttempts {
				t.Fatalf("the endpoint got %d POSTs, want %d (a redirect is a failed delivery, retried)", n, webhookAttempts)
			}
			if !strings.Contains(logs.String(), "never follow redirects") || !strings.Contains(logs.String(), `"alert webhook failed"`) {
				t.Fatalf("the failure is not logged as a refused redirect:\n%s", logs)
			}
		})
	}
}

// TestWebhookRefusesPrivateDestinations: without allowPrivate, a host name that
// resolves to loopback is refused when it is dialled, before any byte is sent, and
// not retried; with it, the same URL is delivered.
func TestWebhookRefusesPrivateDestinations(t *testing.T) {
	rcv := newReceiver(t, nil)
	u, _ := url.Parse(rcv.srv.URL)
	byName := "http://localhost:" + u.Port() + "/hook" // a name, checked at dial time
	logs := deliver(t, false, byName)
	if n := rcv.count(); n != 0 {
		t.Fatalf("the loopback endpoint got %d requests without allow-private, want 0", n)
	}
	if !strings.Contains(logs.String(), "private") || !strings.Contains(logs.String(), `"attempts":1`) {
		t.Fatalf("the refusal is not logged, or was retried:\n%s", logs)
	}
	deliver(t, true, byName)
	if n := rcv.count(); n != 1 {
		t.Fatalf("with allow-private the endpoint got %d requests, want 1", n)
	}
}

// TestCheckURL: a literal private address is refused at configuration time unless
// allowed; names and public addresses pass (names are checked when dialled).
func TestCheckURL(t *testing.T) {
	for _, u := range []string{
		"http://127.0.0.1:9000/hook", "http://127.1.2.3/", "https://10.1.2.3/", "https://172.16.0.1/", "https://172.31.255.255/",
		"https://192.168.1.1/", "http://169.254.169.254/latest/meta-data", "https://100.64.0.1/", "https://100.127.255.254/",
		"http://0.0.0.0:80/", "http://[::1]:8080/", "http://[::]/", "https://[fe80::1%25eth0]/", "https://[fd00::1]/",
		"https://[fc00::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:10.0.0.1]/",
	} {
		if reason := CheckURL(u, false); !strings.Contains(reason, "alert-webhook-allow-private") {
			t.Errorf("CheckURL(%s) = %q, want a refusal naming alert-webhook-allow-private", u, reason)
		}
		if reason := CheckURL(u, true); reason != "" {
			t.Errorf("CheckURL(%s, allowPrivate) = %q, want accepted", u, reason)
		}
	}
	for _, u := range []string{"https://hooks.example.com/x", "https://93.184.216.34/x", "https://172.32.0.1/",
		"https://100.128.0.1/", "https://[2001:db8::1]/", "http://localhost:9000/"} {
		if reason := CheckURL(u, false); reason != "" {
			t.Errorf("CheckURL(%s) = %q, want accepted", u, reason)
		}
	}
	for _, u := range []string{"ftp://hooks.example/x", "hooks.example/x", "https://user:pw@hooks.example/", "https://hooks.example/#x"} {
		if reason := CheckURL(u, true); reason == "" {
			t.Errorf("CheckURL(%s) accepted", u)
		}
	}
}

func TestPrivateAddr(t *testing.T) {
	for s, want := range map[string]bool{
		"127.0.0.1": true, "10.0.0.1": true, "169.254.1.1": true, "100.64.0.1": true, "0.0.0.0": true,
		"::1": true, "fe80::1": true, "fd12::1": true, "::ffff:192.168.0.1": true,
		"8.8.8.8": false, "100.63.255.255": false, "2606:4700::1": false, "172.15.255.255": false,
	} {
		if got := PrivateAddr(netip.MustParseAddr(s)); got != want {
			t.Errorf("PrivateAddr(%s) = %v, want %v", s, got, want)
		}
	}
}
