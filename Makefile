# raftpipe build, test and benchmark targets. Every target is documented in
# README.md; `make help` lists them.
GO        ?= go
FUZZTIME  ?= 30s
DURATION  ?= 10m
BENCHTIME ?= 1s
COUNT     ?= 5
PKGS      ?= ./...

# The nested modules (each its own go.mod, replacing the main module with
# this checkout): the comparison peers, and the monitoring files check.
PEER_MODULES   := bench/peers/hashicorp bench/peers/etcd
NESTED_MODULES := $(PEER_MODULES) docs/monitoring/check

# staticcheck is pinned and installed by `make lint` itself into .tools/
# (ignored by git), one directory per version so a bump reinstalls it.
# 2026.2.2 is built for Go 1.26.
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK         := $(CURDIR)/.tools/staticcheck-$(STATICCHECK_VERSION)/staticcheck

.PHONY: help test peers-test monitoring-check lint fmt-check vet bench bench-cluster fuzz build sim chaos compare idle clean

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

test: fmt-check vet ## gofmt check, go vet, the race-enabled test suite (~15 min budget), the peer modules' tests and the monitoring files check
	$(GO) test -race -timeout 20m $(PKGS)
	$(MAKE) peers-test
	$(MAKE) monitoring-check

peers-test: ## bench/peers/hashicorp and bench/peers/etcd (each its own module): go vet and the race-enabled tests (part of `make test`)
	@for m in $(PEER_MODULES); do \
		echo "== $$m"; \
		(cd $$m && $(GO) vet ./... && $(GO) test -race -timeout 10m ./...) || exit 1; \
	done

monitoring-check: ## docs/monitoring: alert rules parse (rulefmt), every metric the rules and dashboard use is exposed by a live node, promlint (own module: go mod download there first to run offline)
	cd docs/monitoring/check && $(GO) vet ./... && $(GO) test -race -timeout 5m ./...

lint: $(STATICCHECK) ## staticcheck (pinned, installed into .tools/) over the main module and every nested module
	$(STATICCHECK) ./...
	@for m in $(NESTED_MODULES); do \
		echo "== staticcheck $$m"; \
		(cd $$m && $(STATICCHECK) ./...) || exit 1; \
	done

$(STATICCHECK):
	GOBIN=$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

fmt-check: ## fail if any Go file is not gofmt-clean
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet: ## go vet every package
	$(GO) vet $(PKGS)

bench: ## microbenchmarks with -benchmem (wire, wal, core, transport, kv, client); benchstat-readable output saved in results/
	@mkdir -p results
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(COUNT) $$($(GO) list ./... | grep -v -e /bench/cluster -e /cmd/) | tee results/bench-$$(date +%Y%m%d-%H%M%S).txt

fuzz: ## run every fuzz target for FUZZTIME each (default 30s)
	FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

sim: ## long randomized consensus simulations (TestSim, TestSimQuiesce, TestSimGroups: DURATION each): make sim DURATION=10m
	$(GO) test ./raft -run Sim -sim.duration $(DURATION) -timeout 0 -v

chaos: ## long fault-injection runs against real clusters (DURATION per schedule, 9 schedules): make chaos DURATION=10m
	$(GO) test ./internal/chaos -run Chaos -chaos.duration $(DURATION) -chaos.process -chaos.report results/chaos-$$(date +%F).md -timeout 0 -v

compare: ## raftpipe (direct, direct over 16 groups, client, 3 raftnode processes) vs hashicorp/raft (default, tuned) and etcd at 1/16/64/256 clients, with CPU per write -> results/compare-DATE.md
	DURATION=$(or $(CMP_DURATION),10s) REPEAT=$(or $(REPEAT),3) bash scripts/compare.sh

idle: ## what idle groups cost: 3 nodes in one process with IDLE_GROUPS groups (default 1000) all quiesced: CPU per node, peer messages, memory per replica -> results/idle-DATE.md
	@mkdir -p results
	@cmd="go run ./bench/idle -groups $(or $(IDLE_GROUPS),1000) -window $(or $(IDLE_WINDOW),30s)"; \
	{ echo "# Idle groups, $$(date +%F)"; echo; echo "Command: \`$$cmd\` (\`make idle\`), on $$(nproc) cores."; echo; $$cmd; } | tee results/idle-$$(date +%F).md

bench-cluster: ## BenchmarkCluster on an embedded 3-node cluster (slow: real fsync)
	$(GO) test -run '^$$' -bench Cluster -benchtime 20000x -count $(COUNT) ./bench/cluster | tee results/cluster-bench-$$(date +%Y%m%d-%H%M%S).txt

build: ## build bin/raftnode and bin/raftbench
	@mkdir -p bin
	@for c in raftnode raftbench; do \
		if [ -d cmd/$$c ]; then $(GO) build -o bin/$$c ./cmd/$$c || exit 1; fi; \
	done

clean: ## remove build outputs and the installed tools
	rm -rf bin .tools
