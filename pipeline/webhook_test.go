package pipeline

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vigil.dev/vigil/control"
)

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestWebhookRetries(t *testing.T) {
	var (
		calls atomic.Int32
		mu    sync.Mutex
		got   []Alert
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("X-Token") != "t" {
			t.Errorf("request %d: %s, content type %q, token %q", n, r.Method, r.Header.Get("Content-Type"), r.Header.Get("X-Token"))
		}
		b, _ := io.ReadAll(r.Body)
		if n == 1 {
			http.Error(w, "busy", http.StatusInternalServerError) // the first try fails
			return
		}
		var a Alert
		if err := json.Unmarshal(b, &a); err != nil {
			t.Errorf("request %d: %v: %s", n, err, b)
		}
		mu.Lock()
		got = append(got, a)
		mu.Unlock()
	}))
	defer srv.Close()
	w, err := NewWebhook(WebhookConfig{URL: srv.URL, Hostname: "node-1", Backoff: 5 * time.Millisecond,
		Header: http.Header{"X-Token": {"t"}}})
	if err != nil {
		t.Fatal(err)
	}
	v := escapeVerdict()
	w.Verdict(v)
	w.Action(control.Record{Verdict: v.ID, Action: control.ActKillProcess, Effective: alertT0})
	waitFor(t, "two alerts sent", func() bool { return w.Stats().Sent == 2 })
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	if st.Retries != 1 || st.Dropped != 0 || st.Failed != 0 || calls.Load() != 3 {
		t.Errorf("stats %+v after %d requests, want 2 sent, 1 retry, 3 requests", st, calls.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0].Rule != v.Rule || got[0].Priority != "Critical" || got[0].Hostname != "node-1" ||
		got[0].VerdictID != v.ID || got[0].OutputFields["k8s.pod.name"] != "shop-7d9f" ||
		len(got[1].Actions) != 1 || got[1].Actions[0].Action != control.ActKillProcess {
		t.Errorf("received %+v", got)
	}
}

func TestWebhookRefusedIsFinal(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "no", http.StatusBadRequest)
	}))
	defer srv.Close()
	w, err := NewWebhook(WebhookConfig{URL: srv.URL, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w.Verdict(escapeVerdict())
	waitFor(t, "the alert given up", func() bool { return w.Stats().Failed == 1 })
	w.Close(context.Background())
	if st := w.Stats(); calls.Load() != 1 || st.Retries != 0 || st.LastError == "" {
		t.Errorf("%d requests, stats %+v; want 1 request, no retry, the error kept", calls.Load(), st)
	}
}

// TestWebhookDown: with the receiver down, the worker is never held up:
// every Verdict returns at once, the overflow is dropped and counted, and
// Close gives up when its context ends.
func TestWebhookDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connections are refused
	const queue, n = 4, 200
	w, err := NewWebhook(WebhookConfig{URL: "http://" + addr + "/", Queue: queue, Retries: 3, Backoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	v := escapeVerdict()
	w.Verdict(v)
	waitFor(t, "the first POST refused", func() bool { return w.Stats().LastError != "" })
	// The sender now waits to retry its alert; fill the queue, then time
	// verdicts that find it full.
	for range queue {
		w.Verdict(v)
	}
	var took []time.Duration
	for range n - 1 - queue {
		start := time.Now()
		w.Verdict(v)
		took = append(took, time.Since(start))
	}
	// The sender is stuck for a second: a Verdict that waited for it would
	// take that long. The median is what a Verdict costs; the slowest one
	// is bounded loosely, as a loaded test machine preempts anyone.
	slices.Sort(took)
	if med, slowest := took[len(took)/2], took[len(took)-1]; med > time.Millisecond || slowest > 200*time.Millisecond {
		t.Errorf("Verdict with the queue full: median %v, slowest %v; want < 1ms, < 200ms", med, slowest)
	}
	st := w.Stats()
	if st.Dropped != n-1-queue || st.Queued != queue {
		t.Errorf("stats %+v: want %d dropped, %d queued", st, n-1-queue, queue)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := w.Close(ctx); err == nil {
		t.Error("Close with the receiver down and alerts queued: no error")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	st = w.Stats()
	if st.Sent != 0 || st.Sent+st.Dropped+st.Failed != n {
		t.Errorf("stats %+v: every one of %d alerts should be dropped or failed", st, n)
	}
	w.Verdict(v) // after Close: counted, not sent, no panic
	if w.Stats().Dropped != st.Dropped+1 {
		t.Error("a verdict after Close was not counted as dropped")
	}
}

func TestWebhookURL(t *testing.T) {
	for _, u := range []string{"", "localhost:2801", "ftp://x/", "http://"} {
		if _, err := NewWebhook(WebhookConfig{URL: u}); err == nil {
			t.Errorf("NewWebhook(%q): no error", u)
		}
	}
}
