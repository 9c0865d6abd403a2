# bench.mk: the `bench` target, included by the root Makefile.
# Runs bench/run.sh (worker vs native baseline, one table, results in
# bench/results/). Knobs pass through the environment, e.g.
#   make bench CLIENTS=32 DURATION=5 IDLE_CONNS=2000
.PHONY: bench
bench:
	CLIENTS="$(CLIENTS)" DURATION="$(DURATION)" WARMUP="$(WARMUP)" IDLE_CONNS="$(IDLE_CONNS)" \
	  bash bench/run.sh
