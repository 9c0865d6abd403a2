# Nur's entry points. `make test` is the test command (CI runs it through .ci/run).

MODULE ?= examples/build/echo.wasm
LISTEN ?= 127.0.0.1:8080
ADMIN  ?= 127.0.0.1:9090

.PHONY: run test examples lint

## Serve an example function locally, no cluster: `make run` (MODULE=... to pick another).
run: examples
	cargo run --release -p nur-worker -- serve --module $(MODULE) --listen $(LISTEN) --admin-listen $(ADMIN)

## Install what is missing, build, lint, start testenv and run every test.
test:
	scripts/test.sh

## Build the example functions into examples/build/.
examples:
	examples/build.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

include testenv/testenv.mk
-include bench/bench.mk
-include fuzz/fuzz.mk
-include docker/images.mk
