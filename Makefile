# raftpipe build, test and benchmark targets. Every target is documented in
# README.md; `make help` lists them.
GO        ?= go
FUZZTIME  ?= 30s
DURATION  ?= 10m
BENCHTIME ?= 1s
COUNT     ?= 5
PKGS      ?= ./...

.PHONY: help test fmt-check vet bench fuzz build sim chaos compare clean

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

test: fmt-check vet ## gofmt check, go vet, and the race-enabled test suite (~15 min budget)
	$(GO) test -race -timeout 20m $(PKGS)

fmt-check: ## fail if any Go file is not gofmt-clean
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet: ## go vet every package
	$(GO) vet $(PKGS)

bench: ## microbenchmarks with -benchmem; benchstat-readable output saved in results/
	@mkdir -p results
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(COUNT) $(PKGS) | tee results/bench-$$(date +%Y%m%d-%H%M%S).txt

fuzz: ## run every fuzz target for FUZZTIME each (default 30s)
	FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

build: ## build bin/raftnode and bin/raftbench
	@mkdir -p bin
	@for c in raftnode raftbench; do \
		if [ -d cmd/$$c ]; then $(GO) build -o bin/$$c ./cmd/$$c || exit 1; fi; \
	done

clean: ## remove build outputs
	rm -rf bin
