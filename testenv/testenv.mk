# testenv.mk: a real Kubernetes control plane, MinIO and helm for the tests.
# Included by the root Makefile. Targets:
#   make testenv        build what is missing, start everything, return when ready
#   make testenv-down   stop it
#   make testenv-build  only build (cached by version under $(TESTENV_CACHE))
#   make testenv-images import the operator, worker and gateway images (built
#                       from this checkout) into the real node; part of
#                       `make testenv`
# After `make testenv`: .testenv/env (KUBECONFIG, AWS_*, NUR_TEST_BUCKET,
# NUR_TESTENV_NODE...), .testenv/kubeconfig,
# .testenv/bin/{kubectl,helm,minio,nur-testenv}.

TESTENV_SRC   := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
TESTENV_DIR   ?= $(CURDIR)/.testenv
TESTENV_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/nur-testenv

# MinIO has no semver tags; this is the module version of its last commit
# on the Go module proxy (2026-02-12).
MINIO_VERSION ?= v0.0.0-20260212201848-7aac2a2c5b7c

# The CNI plugins of the real node (bridge, host-local, loopback, portmap).
CNI_VERSION ?= v1.9.1

# Extra flags for `nur-testenv up`, e.g. TESTENV_UP_FLAGS=--kwok=false
# (no scheduler/kwok: pods stay Pending). See `nur-testenv up -h`.
TESTENV_UP_FLAGS ?=

TESTENV_GO    := GOFLAGS=-buildvcs=false go
TESTENV_BUILD := build -trimpath

# Versions come from testenv/go.mod; they are stamped into the binaries the
# way the upstream release builds do (kubectl version, helm version, and
# helm's .Capabilities.KubeVersion all report them).
TESTENV_K8S_VERSION  := $(shell awk '$$1=="k8s.io/kubernetes"{print $$2; exit}' $(TESTENV_SRC)/go.mod)
TESTENV_HELM_VERSION := $(shell awk '$$1=="helm.sh/helm/v3"{print $$2; exit}' $(TESTENV_SRC)/go.mod)
TESTENV_K8S_MINOR    := $(word 2,$(subst ., ,$(TESTENV_K8S_VERSION)))
TESTENV_K8S_LDFLAGS  := -s -w \
  -X k8s.io/component-base/version.gitVersion=$(TESTENV_K8S_VERSION) \
  -X k8s.io/component-base/version.gitMajor=1 \
  -X k8s.io/component-base/version.gitMinor=$(TESTENV_K8S_MINOR) \
  -X k8s.io/component-base/version.gitTreeState=clean \
  -X k8s.io/client-go/pkg/version.gitVersion=$(TESTENV_K8S_VERSION) \
  -X k8s.io/client-go/pkg/version.gitMajor=1 \
  -X k8s.io/client-go/pkg/version.gitMinor=$(TESTENV_K8S_MINOR)
TESTENV_HELM_LDFLAGS := -s -w \
  -X helm.sh/helm/v3/internal/version.version=$(TESTENV_HELM_VERSION) \
  -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(TESTENV_K8S_MINOR) \
  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(TESTENV_K8S_MINOR)

# Binaries are keyed by the inputs that decide them, so a second
# `make testenv` (or a CI cache restore) builds nothing.
TESTENV_MODKEY := $(shell cat $(TESTENV_SRC)/go.mod $(TESTENV_SRC)/go.sum | sha256sum | cut -c1-12)-$(TESTENV_HELM_VERSION)
TESTENV_KEY    := $(shell cat $(TESTENV_SRC)/go.mod $(TESTENV_SRC)/go.sum $(TESTENV_SRC)/*.go $(TESTENV_SRC)/testenv.mk | sha256sum | cut -c1-12)
TESTENV_BIN    := $(TESTENV_CACHE)/nur-testenv-$(TESTENV_KEY)
TESTENV_HELM   := $(TESTENV_CACHE)/helm-$(TESTENV_MODKEY)
TESTENV_MINIO  := $(TESTENV_CACHE)/minio-$(MINIO_VERSION)
TESTENV_CNI    := $(TESTENV_CACHE)/cni-$(CNI_VERSION)
TESTENV_PAUSE  := $(TESTENV_CACHE)/pause-$(shell cat $(TESTENV_SRC)/pause/main.go | sha256sum | cut -c1-12)
CNI_PLUGINS    := plugins/main/bridge plugins/main/loopback plugins/ipam/host-local plugins/meta/portmap

# The images the chart names (tag: the chart's appVersion), carrying the
# binaries of this checkout's debug build with their shared libraries.
NUR_IMAGE_TAG    := $(shell sed -n 's/^appVersion: "\(.*\)"/\1/p' $(TESTENV_SRC)/../charts/nur/Chart.yaml)
NUR_TARGET_DIR   := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

.PHONY: testenv testenv-down testenv-build testenv-images

testenv-build: $(TESTENV_BIN) $(TESTENV_HELM) $(TESTENV_MINIO) $(TESTENV_CNI)/portmap $(TESTENV_PAUSE)

$(TESTENV_BIN):
	@mkdir -p $(TESTENV_CACHE)
	@echo "testenv: building nur-testenv (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, kubectl)"
	cd $(TESTENV_SRC) && $(TESTENV_GO) $(TESTENV_BUILD) -ldflags='$(TESTENV_K8S_LDFLAGS)' -o $@.tmp . && mv $@.tmp $@
	@find $(TESTENV_CACHE) -maxdepth 1 -name 'nur-testenv-*' ! -name '$(notdir $@)' -delete

$(TESTENV_HELM):
	@mkdir -p $(TESTENV_CACHE)
	@echo "testenv: building helm"
	cd $(TESTENV_SRC) && $(TESTENV_GO) $(TESTENV_BUILD) -ldflags='$(TESTENV_HELM_LDFLAGS)' -o $@.tmp helm.sh/helm/v3/cmd/helm && mv $@.tmp $@
	@find $(TESTENV_CACHE) -maxdepth 1 -name 'helm-*' ! -name '$(notdir $@)' -delete

$(TESTENV_MINIO):
	@mkdir -p $(TESTENV_CACHE)/gobin-minio
	@echo "testenv: building minio $(MINIO_VERSION)"
	cd $(TESTENV_CACHE) && GOBIN=$(TESTENV_CACHE)/gobin-minio $(TESTENV_GO) install -trimpath -ldflags='-s -w' github.com/minio/minio@$(MINIO_VERSION) \
	  && mv $(TESTENV_CACHE)/gobin-minio/minio $@

$(TESTENV_CNI)/portmap:
	@mkdir -p $(TESTENV_CNI).tmp
	@echo "testenv: building CNI plugins $(CNI_VERSION)"
	cd $(TESTENV_CACHE) && GOBIN=$(TESTENV_CNI).tmp CGO_ENABLED=0 $(TESTENV_GO) install -trimpath -ldflags='-s -w' \
	  $(foreach p,$(CNI_PLUGINS),github.com/containernetworking/plugins/$(p)@$(CNI_VERSION)) \
	  && rm -rf $(TESTENV_CNI) && mv $(TESTENV_CNI).tmp $(TESTENV_CNI)

$(TESTENV_PAUSE):
	@mkdir -p $(TESTENV_CACHE)
	cd $(TESTENV_SRC) && CGO_ENABLED=0 $(TESTENV_GO) $(TESTENV_BUILD) -ldflags='-s -w' -o $@.tmp ./pause && mv $@.tmp $@

testenv: testenv-start testenv-images

.PHONY: testenv-start
testenv-start: testenv-build
	@mkdir -p $(TESTENV_DIR)/bin && printf '*\n' > $(TESTENV_DIR)/.gitignore
	@ln -sfn $(TESTENV_BIN) $(TESTENV_DIR)/bin/nur-testenv
	@ln -sfn $(TESTENV_BIN) $(TESTENV_DIR)/bin/kubectl
	@ln -sfn $(TESTENV_HELM) $(TESTENV_DIR)/bin/helm
	@ln -sfn $(TESTENV_MINIO) $(TESTENV_DIR)/bin/minio
	@$(TESTENV_DIR)/bin/nur-testenv start --dir $(TESTENV_DIR) --minio $(TESTENV_DIR)/bin/minio \
	  --cni-bin $(TESTENV_CNI) --pause $(TESTENV_PAUSE) $(TESTENV_UP_FLAGS)

# Without a real node (not root, no containerd) there is nothing to import.
testenv-images: testenv-start
	@if grep -q '^NUR_TESTENV_NODE=' $(TESTENV_DIR)/env; then \
	  cargo build --locked -p nur-operator -p nur-worker -p nur-gateway && \
	  $(TESTENV_DIR)/bin/nur-testenv import-image --dir $(TESTENV_DIR) \
	    --image ghcr.io/nur-dev/nur-operator:$(NUR_IMAGE_TAG)=$(NUR_TARGET_DIR)/debug/nur-operator,run \
	    --image ghcr.io/nur-dev/nur-worker:$(NUR_IMAGE_TAG)=$(NUR_TARGET_DIR)/debug/nur-worker \
	    --image ghcr.io/nur-dev/nur-gateway:$(NUR_IMAGE_TAG)=$(NUR_TARGET_DIR)/debug/nur-gateway,run; \
	fi

testenv-down:
	@if [ -x $(TESTENV_DIR)/bin/nur-testenv ]; then $(TESTENV_DIR)/bin/nur-testenv down --dir $(TESTENV_DIR); \
	 else echo "testenv: not running"; fi
