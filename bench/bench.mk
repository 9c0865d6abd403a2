# bench.mk: the `bench` target, included by the root Makefile.
# Runs bench/run.sh (worker vs native baseline, one table, results in
# bench/results/). Knobs pass through the environment, e.g.
#   make bench CLIENTS=32 DURATION=5 IDLE_CONNS=2000
.PHONY: bench
bench:
	CLIENTS="$(CLIENTS)" DURATION="$(DURATION)" WARMUP="$(WARMUP)" IDLE_CONNS="$(IDLE_CONNS)" \
	  bash bench/run.sh

## The operator at N functions (default 1000) on the test environment:
## `make testenv bench-operator FUNCTIONS=1000`.
.PHONY: bench-operator
bench-operator:
	cargo build --release -p nur-operator -p nur-bench --bin nur-operator --bin nur-bench-operator
	target/release/nur-bench-operator --functions $(or $(FUNCTIONS),1000) --operator target/release/nur-operator

## nur-gateway's cost and the scale-to-zero wake time on testenv's real node:
## `make testenv bench-gateway` (knobs as environment, e.g. WAKES=20 ROUNDS=2).
.PHONY: bench-gateway
bench-gateway:
	bash bench/gateway.sh

## The per-connection cost of WASI functions (Go, Rust commands) beside the
## Nur-ABI echo, in one run: `make bench-wasi` (knobs: CLIENTS, DURATION).
.PHONY: bench-wasi
bench-wasi:
	bash bench/wasi.sh

## One connection's wasm cost, Nur's worker beside wasmtime's pooling
## allocator, same modules, one run: `make bench-runtimes` (wasmtime is
## built for this target alone). Table in bench/results/runtimes-<date>.md.
.PHONY: bench-runtimes
bench-runtimes:
	examples/build.sh >/dev/null
	cargo bench --locked -p nur-bench --features wasmtime --bench runtimes
	python3 bench/report.py runtimes target/criterion/runtimes >bench/results/runtimes-$$(date -u +%F).md
	cat bench/results/runtimes-$$(date -u +%F).md
