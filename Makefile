# Chaperone — make help lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
CACHE ?= $(HOME)/.cache/chaperone
GOLANGCI_VERSION := v2.15.0
GOLANGCI := $(CACHE)/golangci-lint-$(GOLANGCI_VERSION)
TEST_TIMEOUT ?= 40m
# The Kubernetes test bed (kube-apiserver, kube-controller-manager, etcd) is
# built once per version into this cache; see e2e/kube/build.sh.
KUBE_CACHE ?= /var/cache/chaperone
PKGS := ./...

.PHONY: help build kube helm test demo e2e bench lint generate fmt clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build every binary into bin/ (static: no libc to load or keep resident)
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./cmd/...

demo: build ## record a scripted agent on this machine and replay it (root)
	$(BIN)/chaperonectl demo

kube: ## build the Kubernetes test bed once per version (cached; 10-25 min cold on 2 cores)
	CHAPERONE_CACHE=$(KUBE_CACHE) bash e2e/kube/build.sh

helm: ## build the helm the chart tests run, once per version (cached; a few minutes cold)
	CHAPERONE_CACHE=$(KUBE_CACHE) bash e2e/helm/build.sh

test: build kube helm ## the whole suite CI runs (root: network namespaces, nftables, a real kube-apiserver)
	CHAPERONE_CACHE=$(KUBE_CACHE) CHAPERONE_BIN=$(BIN) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

e2e: build kube helm ## only the end-to-end tests
	CHAPERONE_CACHE=$(KUBE_CACHE) CHAPERONE_BIN=$(BIN) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -v ./e2e/...

bench: build ## benchmarks, side by side with the named peers (root; needs nginx-light and wrk)
	$(GO) test -run '^$$' -bench . -benchtime 2s ./pkg/... ./sidecar/... ./webhook/...
	$(GO) run ./e2e/benchreport --bin $(BIN)
	cd e2e/maskbench && $(GO) run . # masking vs gitleaks v8.30.1, built from its module here

lint: $(GOLANGCI) ## golangci-lint v2 with the repository's config
	$(GOLANGCI) run ./...

$(GOLANGCI):
	@mkdir -p $(CACHE)
	GOBIN=$(CACHE)/gobin $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)
	mv $(CACHE)/gobin/golangci-lint $@

generate: ## regenerate generated code (CI fails on a diff)
	$(GO) generate ./...

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

clean: ## remove build output
	rm -rf $(BIN)
