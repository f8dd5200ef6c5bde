//go:build ignore

// load is the HTTP client of vigil's pipeline benchmark: it sends GET
// requests to URL at a fixed RATE per second for DURATION over CONNS
// keep-alive connections, each request at its scheduled time (latency is
// measured from that time, so a server that falls behind shows it), and
// prints one JSON line: requests, errors, elapsed_ms, p50_us, p99_us.
//
//	load URL RATE DURATION CONNS
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: load URL RATE DURATION CONNS")
		os.Exit(2)
	}
	url := os.Args[1]
	rate, err1 := strconv.Atoi(os.Args[2])
	dur, err2 := time.ParseDuration(os.Args[3])
	conns, err3 := strconv.Atoi(os.Args[4])
	if err1 != nil || err2 != nil || err3 != nil || rate <= 0 || conns <= 0 {
		fmt.Fprintln(os.Stderr, "load: bad arguments")
		os.Exit(2)
	}
	client := &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}}
	n := int(float64(rate) * dur.Seconds())
	step := time.Second / time.Duration(rate)
	start := time.Now().Add(20 * time.Millisecond)
	lats := make([][]time.Duration, conns)
	errs := make([]int, conns)
	var wg sync.WaitGroup
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := c; i < n; i += conns {
				due := start.Add(time.Duration(i) * step)
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				resp, err := client.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil {
					errs[c]++
					continue
				}
				lats[c] = append(lats[c], time.Since(due))
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	nerr := 0
	for c := range lats {
		all = append(all, lats[c]...)
		nerr += errs[c]
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	q := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[int(p*float64(len(all)-1))].Microseconds())
	}
	json.NewEncoder(os.Stdout).Encode(map[string]any{"requests": len(all), "errors": nerr,
		"elapsed_ms": float64(elapsed.Microseconds()) / 1000, "p50_us": q(0.5), "p99_us": q(0.99)})
}
