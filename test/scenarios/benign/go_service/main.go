// Command go_service is a benign multi-threaded Go service: an HTTP server
// on loopback serving JSON, with a client that sends it requests from
// several goroutines for a bounded number of requests.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	counts := map[string]int{}
	mux := http.NewServeMux()
	mux.HandleFunc("/items/", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		counts[r.URL.Path]++
		n := counts[r.URL.Path]
		mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "hits": n})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				resp, err := http.Get(fmt.Sprintf("http://%s/items/%d", ln.Addr(), (g*7+i)%13))
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}(g)
	}
	wg.Wait()
	srv.Close()
}
