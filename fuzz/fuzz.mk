# fuzz.mk: cargo-fuzz targets (fuzz/), included by the root Makefile.
#   make fuzz                       every target for FUZZ_SECONDS each
#   make fuzz FUZZ_TARGETS=abi_check FUZZ_SECONDS=600
# Needs the nightly toolchain and cargo-fuzz (installed if missing). Not part
# of `make test`: crashes found become regression tests there instead.
# The corpus grows in fuzz/corpus/TARGET (ignored by git but for the seeds
# in fuzz/seeds/TARGET); crashes land in fuzz/artifacts/TARGET.

FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= abi_check host_calls smith_connection
# wasmer turns guest faults into signals that AddressSanitizer's own SEGV
# handling would take, and the ABI check is safe Rust: no sanitizer, so the
# three targets share one build.
FUZZ_SANITIZER ?= none
FUZZ_FLAGS ?= -timeout=20 -rss_limit_mb=4096 -max_len=16384

.PHONY: fuzz fuzz-tools

fuzz-tools:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo +nightly install cargo-fuzz --locked

fuzz: fuzz-tools
	@set -e; cd fuzz; for target in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$target; \
	  echo "==> $$target for $(FUZZ_SECONDS)s"; \
	  cargo +nightly fuzz run --sanitizer $(FUZZ_SANITIZER) $$target corpus/$$target seeds/$$target -- \
	    -max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS); \
	done
