# vigil: build, test, benchmark. `make help` lists the targets.
GO      ?= go
BIN     := bin/vigil
PKGS    := ./...
# BPF objects and Go bindings are committed; `make generate` rebuilds them.
GOFLAGS_TEST ?= -count=1 -timeout 40m

.PHONY: help build generate generate-check test unit e2e demo bench bench-pipeline bench-control bench-peers bench-latency bench-scale bench-churn kubelet-e2e bench-audit bench-detector bench-runtime eval eval-full node-up node-down lint clean deps fuzz

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

# What `vigil version` and vigil_build_info report: the tree's `git describe`
# and commit (a build outside git falls back to the module's build info).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

build: ## build bin/vigil (no clang needed: the BPF objects are committed)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/vigil

deps: ## install what building, testing and generating need (apt; idempotent)
	bash install/deps.sh

generate: ## rebuild BPF objects, Go bindings and syscall tables (needs clang; see install/deps.sh)
	cd event && ./gen_syscalls.sh
	$(GO) generate ./bpf/...

generate-check: ## fail if `make generate` changes any committed file
	$(MAKE) generate
	git diff --exit-code --stat -- bpf event || { echo "generated files are stale: run 'make generate' and commit"; exit 1; }

test: build ## every test: unit, privileged (as root: real eBPF, cgroups, seccomp) and end-to-end
	$(GO) vet $(PKGS)
	$(GO) test $(GOFLAGS_TEST) $(PKGS)

unit: ## the tests that need no root
	$(GO) test -count=1 ./event/... ./detector/... ./annotations/... ./audit/... ./hook/... ./plugin/...

demo: ## build vigil and trace a small workload (as root)
	bash install/demo.sh

e2e: build ## end-to-end: real containerd, then CRI-O, + runc + vigil agent, pods via crictl (as root; the first run builds both nodes)
	bash install/node.sh up
	bash install/node.sh up --runtime crio
	$(GO) test -count=1 -timeout 30m -v ./test/e2e/...

kubelet-e2e: build ## the kubelet end-to-end test alone: a real kubelet (built once, cached) runs the agent as a static pod from the Helm chart (as root)
	bash install/node.sh up
	VIGIL_E2E_RUNTIME=containerd $(GO) test -count=1 -timeout 20m -run TestKubeletStaticPods -v ./test/e2e/

node-up: build ## a local test node: containerd with NRI, runc, crictl, local images, vigil agent (idempotent)
	bash install/node.sh up
	bash install/node.sh agent-up

node-down: ## stop the local test node (agent, notify keeper, containerd, test pods)
	bash install/node.sh down

eval: build ## detection report: the CVE protocol on ../shared/datasets/sok-dev (VIGIL_SOK_DEV), then every attack and the benign corpus (81 workloads) under vigil trace (as root; eval-report.json; fails on any benign verdict)
	bash install/deps.sh --corpus
	$(GO) run ./test/scenarios/eval --vigil $(BIN) --out eval-report.json

eval-full: build ## make eval plus the model's variants side by side and leave-one-CVE-out (longer)
	bash install/deps.sh --corpus
	$(GO) run ./test/scenarios/eval --vigil $(BIN) --variants --out eval-report.json

bench: build ## tracer overhead ratios, throughput and latency (bench-tracer.json), then make bench-pipeline
	./$(BIN) bench tracer --out bench-tracer.json
	$(MAKE) bench-pipeline

bench-pipeline: build ## realistic workloads untraced, on the agent's path and under vigil trace --quiet: ratios, CPU per event by stage (bench-pipeline.json; ~10 min)
	./$(BIN) bench pipeline --reps 5 --duration 5s --out bench-pipeline.json

bench-control: build ## response ladder: triggering event to action in force, p50/p99 per action (JSON in bench-control.json)
	./$(BIN) bench control --triggers 100 --out bench-control.json

bench-latency: build ## latency classes (normal vs realtime at 1K and 10K events/s: p50/p99 syscall exit to decision, agent and workload CPU) and loss classes (drop vs block under a 4-thread flood) (bench-latency.json)
	./$(BIN) bench latency --reps 5 --out bench-latency.json

bench-scale: build ## N containers tracked at once (1k, 5k, 10k, 20k): agent RSS and CPU, map memory, events/s, drops, decision p99, time to track/untrack (JSON lines appended to bench-scale.jsonl)
	./$(BIN) bench scale --out bench-scale.jsonl

bench-churn: build ## 500 annotated pods created and removed as fast as containerd allows: time per pod, nothing leaked (JSON in bench-churn.json)
	bash install/node.sh up
	VIGIL_E2E_RUNTIME=containerd VIGIL_CHURN_PODS=500 VIGIL_CHURN_OUT=$(CURDIR)/bench-churn.json $(GO) test -count=1 -timeout 60m -run TestChurn -v ./test/e2e/

bench-audit: build ## audit writer alone: sustained events/s, CPU and bytes per event (JSON lines)
	./$(BIN) audit bench --events 5000000 --fsync batch
	./$(BIN) audit bench --events 5000000 --fsync batch --noisy
	./$(BIN) audit bench --events 5000000 --fsync batch --noisy --compression zstd

bench-detector: ## detector events/s and per-event latency p50/p99
	$(GO) test -run '^$$' -bench . -benchtime 2s ./detector

bench-runtime: build ## container create+start latency without/with vigil, JSON in bench-runtime.json
	bash install/node.sh up
	VIGIL_BENCH_OUT=$(CURDIR)/bench-runtime.json $(GO) test -count=1 -run TestCreateStartLatency -v ./test/e2e/

bench-peers: build ## the pipeline workloads under vigil, bpftrace, auditd and strace -f side by side (apt-get installs them; bench-peers.json; ~20 min)
	./$(BIN) bench pipeline --peers --reps 5 --duration 2s --out bench-peers.json

# Fuzz targets as package:Target (go test fuzzes one target per run). Their
# seed corpora (testdata/fuzz/) run with every plain `go test`.
FUZZTIME ?= 10s
FUZZ_TARGETS := ./bpf:FuzzDecode ./bpf:FuzzRecordRoundTrip ./annotations:FuzzParse ./annotations:FuzzParseNodeConfig \
	./detector:FuzzRules ./detector:FuzzReadModel ./detector:FuzzReadUnits ./audit:FuzzSegment \
	./seccomp:FuzzReadState ./seccomp:FuzzParseRights

fuzz: ## run every fuzz target for FUZZTIME each (default 10s; e.g. make fuzz FUZZTIME=30s); failing inputs land in testdata/fuzz/
	@failed=""; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($${t%%:*}, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}" || failed="$$failed $$t"; \
	done; [ -z "$$failed" ] || { echo "fuzz: failed:$$failed (inputs in testdata/fuzz/; rerun with go test -run=TARGET/INPUT)"; exit 1; }

lint: ## go vet, gofmt and staticcheck
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v _bpfel.go)); [ -z "$$out" ] || { echo "gofmt: $$out"; exit 1; }
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

clean:
	rm -rf bin
