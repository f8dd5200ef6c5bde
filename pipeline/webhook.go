package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"vigil.dev/vigil/control"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// WebhookConfig says where and how a Webhook posts alerts.
type WebhookConfig struct {
	// URL receives each alert as a JSON POST (http or https), e.g.
	// falcosidekick's http://falcosidekick:2801/.
	URL string
	// Hostname is each alert's "hostname" (the node's name).
	Hostname string
	// Header is added to every request (e.g. Authorization).
	Header http.Header
	// Queue bounds the alerts waiting to be sent (default 1024); an alert
	// the queue cannot take is dropped and counted.
	Queue int
	// Timeout bounds one request (default 5 s).
	Timeout time.Duration
	// Retries is how often a failed POST is tried again (default 5; -1
	// none): after a connection error, a timeout, 408, 429 or 5xx. Other
	// answers are final.
	Retries int
	// Backoff is the wait before the first retry (default 200 ms); it
	// doubles with each retry up to MaxBackoff (default 10 s).
	Backoff, MaxBackoff time.Duration
	// Client sends the requests (default: a client of its own).
	Client *http.Client
}

// WebhookStats are a Webhook's counters.
type WebhookStats struct {
	Sent    uint64 `json:"sent"`    // alerts the receiver accepted (2xx)
	Retries uint64 `json:"retries"` // POSTs tried again
	Dropped uint64 `json:"dropped"` // alerts the full queue could not take
	Failed  uint64 `json:"failed"`  // alerts given up: retries exhausted, or refused (4xx)
	Queued  int    `json:"queued"`  // alerts waiting now
	// LastError is the last failed POST's error or status.
	LastError string `json:"last_error,omitempty"`
}

// Webhook is a Sink that posts each verdict, and each action taken for
// one, as the JSON object Alerts writes (one alert per request). The
// pipeline's worker only builds the alert and queues it: a slow or dead
// receiver costs it nothing, the queue's overflow is dropped and counted.
// One goroutine of its own sends, in order, retrying with exponential
// backoff. Close stops it.
type Webhook struct {
	cfg     WebhookConfig
	a       *alerter
	buf     bytes.Buffer
	queue   chan []byte
	closing chan struct{} // closed by Close: send what is queued, then stop
	quit    chan struct{} // closed when Close gives up: stop now
	done    chan struct{}
	closed  atomic.Bool

	sent, retries, dropped, failed atomic.Uint64
	mu                             sync.Mutex
	lastErr                        string
}

// NewWebhook starts a webhook sink; Close stops it.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook url %q: want an http:// or https:// URL with a host", cfg.URL)
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 1024
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Retries == 0 {
		cfg.Retries = 5
	} else if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.MaxBackoff < cfg.Backoff {
		cfg.MaxBackoff = cfg.Backoff
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	w := &Webhook{cfg: cfg, a: newAlerter(cfg.Hostname), queue: make(chan []byte, cfg.Queue),
		closing: make(chan struct{}), quit: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w, nil
}

func (w *Webhook) enqueue(al *Alert) {
	if w.closed.Load() {
		w.dropped.Add(1)
		return
	}
	b, err := marshalAlert(al, &w.buf)
	if err != nil {
		w.fail(err.Error())
		return
	}
	select {
	case w.queue <- bytes.Clone(b):
	default:
		w.dropped.Add(1)
	}
}

// Event sends nothing: alerts are verdicts.
func (w *Webhook) Event(*event.Event) {}

// Verdict queues the verdict's alert.
func (w *Webhook) Verdict(v *detector.Verdict) { w.enqueue(w.a.verdict(v)) }

// Action queues the action's alert.
func (w *Webhook) Action(r control.Record) { w.enqueue(w.a.action(r)) }

// Gap sends nothing.
func (w *Webhook) Gap(Gap) {}

// Flush returns at once: the sender runs on its own; failures are in
// Stats.
func (w *Webhook) Flush() error { return nil }

// Stats returns the counters; safe from any goroutine.
func (w *Webhook) Stats() WebhookStats {
	w.mu.Lock()
	last := w.lastErr
	w.mu.Unlock()
	return WebhookStats{Sent: w.sent.Load(), Retries: w.retries.Load(), Dropped: w.dropped.Load(),
		Failed: w.failed.Load(), Queued: len(w.queue), LastError: last}
}

// Close stops taking alerts and sends what is queued until ctx is done;
// what is still queued then is counted as dropped. Call it after the
// pipeline has stopped.
func (w *Webhook) Close(ctx context.Context) error {
	if w.closed.Swap(true) {
		<-w.done
		return nil
	}
	close(w.closing)
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
	}
	close(w.quit)
	<-w.done
	return fmt.Errorf("webhook %s: %w", w.cfg.URL, ctx.Err())
}

func (w *Webhook) fail(msg string) {
	w.failed.Add(1)
	w.mu.Lock()
	w.lastErr = msg
	w.mu.Unlock()
}

func (w *Webhook) run() {
	defer close(w.done)
	for {
		select {
		case b := <-w.queue:
			w.deliver(b)
			continue
		case <-w.closing:
		}
		// Closing: send what is queued unless Close gives up.
		for {
			select {
			case b := <-w.queue:
				select {
				case <-w.quit:
					w.dropped.Add(1)
				default:
					w.deliver(b)
				}
			default:
				return
			}
		}
	}
}

// errFinal marks an answer that retrying will not change.
var errFinal = errors.New("refused")

// deliver posts b until it is accepted, refused, the retries are spent or
// Close gives up.
func (w *Webhook) deliver(b []byte) {
	wait := w.cfg.Backoff
	for attempt := 0; ; attempt++ {
		err := w.post(b)
		if err == nil {
			w.sent.Add(1)
			return
		}
		if errors.Is(err, errFinal) || attempt >= w.cfg.Retries {
			w.fail(err.Error())
			return
		}
		w.mu.Lock()
		w.lastErr = err.Error()
		w.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-w.quit:
			t.Stop()
			w.dropped.Add(1)
			return
		case <-t.C:
		}
		w.retries.Add(1)
		wait = min(2*wait, w.cfg.MaxBackoff)
	}
}

func (w *Webhook) post(b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Timeout)
	defer cancel()
	go func() {
		select {
		case <-w.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%w: %w", errFinal, err)
	}
	for k, vs := range w.cfg.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "vigil")
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("post alert: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection is reused
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		return fmt.Errorf("post alert: %s", resp.Status)
	}
	return fmt.Errorf("post alert: %w: %s", errFinal, resp.Status)
}
