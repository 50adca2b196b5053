# Benchmarks, fuzzing and burst load (issue 5). Included by the main Makefile, which provides
# CARGO, PYTHON, VENV and the `venv` and `build` targets. Every target writes its measurements
# to $(BENCH_DIR) and regenerates its sections of BENCHMARKS.md (the others are kept).

BENCH_DIR    ?= target/bench
# Cold-start runs and round-trip repetitions (min/median/max are over these).
BENCH_RUNS   ?= 5
BENCH_REPS   ?= 3
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := payload urls semver warehouse handler lambda_event
CARGO_FUZZ_VERSION := 0.13.2

# Measurements run in the release profile; the report only reads JSON, so a dev build will do.
HARNESS_RELEASE := target/release/xtask
REPORT = $(CARGO) run --quiet --locked -p xtask -- report \
	--dir $(BENCH_DIR) --criterion target/criterion --out BENCHMARKS.md

.PHONY: bench
bench: venv build bench-xtask bench-start bench-pure bench-roundtrips bench-network bench-coldstart bench-size ## Benchmarks 1-4 (round trips vs Kargo, criterion, cold start, memory, size) into BENCHMARKS.md
	echo $$(( $$(date +%s) - $$(cat $(BENCH_DIR)/bench.start) )) > $(BENCH_DIR)/bench.seconds
	$(REPORT)
	@echo "BENCHMARKS.md updated"

.PHONY: bench-xtask
bench-xtask:
	mkdir -p $(BENCH_DIR)
	$(CARGO) build --release --locked -p xtask

# When the measurements of `make bench` start (after the builds), for the time it takes.
.PHONY: bench-start
bench-start: bench-xtask
	date +%s > $(BENCH_DIR)/bench.start

.PHONY: bench-pure
bench-pure: bench-xtask ## Benchmark 2 alone: criterion over the pure path
	$(HARNESS_RELEASE) machine --out $(BENCH_DIR)/criterion-machine.json
	$(CARGO) bench --locked --bench pure

.PHONY: bench-roundtrips
bench-roundtrips: venv bench-xtask ## Benchmark 1 alone: round trips and latency vs Kargo's model (20 ms per call)
	$(HARNESS_RELEASE) roundtrips --runs $(BENCH_REPS) --out $(BENCH_DIR)/roundtrips.json

# Quiet period before an after-quiet delivery, in seconds (the local API server closes its idle
# connections first; against a real cluster, QUAYHOOK_E2E_KUBECONFIG, give it more than 90).
BENCH_QUIET ?= 1

.PHONY: bench-network
bench-network: venv bench-xtask ## Real network alone: HTTP/2, HTTP/1.1 and Kargo's model through a 20 ms RTT proxy (QUAYHOOK_E2E_KUBECONFIG: a real cluster)
	$(HARNESS_RELEASE) network --runs $(BENCH_RUNS) --quiet $(BENCH_QUIET) --out $(BENCH_DIR)/network.json

.PHONY: bench-coldstart
bench-coldstart: venv build bench-xtask ## Benchmarks 3-4 alone: cold start of target/release/quayhook, peak RSS
	$(HARNESS_RELEASE) coldstart --bin target/release/quayhook --runs $(BENCH_RUNS) --out $(BENCH_DIR)/coldstart.json
	$(HARNESS_RELEASE) memory --out $(BENCH_DIR)/memory.json

.PHONY: bench-size
bench-size: build bench-xtask ## Benchmark 4 alone: binary and zip sizes (arm64 where its target is installed)
	@if rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux'; then \
	  PATH="$(abspath $(VENV))/bin:$$PATH" $(CARGO) lambda build --release --locked --arm64 \
	    --bin quayhook --output-format zip --lambda-dir $(BENCH_DIR)/lambda-arm64 \
	    || echo "arm64 build failed: size not measured"; \
	fi
	$(HARNESS_RELEASE) size --bin target/release/quayhook --out $(BENCH_DIR)/size.json \
	  --arm64-zip $(BENCH_DIR)/lambda-arm64/quayhook/bootstrap.zip

# Where a cold start's CPU goes: perf's cpu-clock samples (hardware counters are not needed)
# over cold starts of the `profiling` build (the release profile with symbols), the child's
# main thread only (`quayhook`: Lambda mode initialises on it). Needs perf (Debian's
# linux-perf); not part of `make bench`.
PROFILING := target/profiling
.PHONY: bench-profile
bench-profile: venv ## Profile cold starts with perf: top symbols of quayhook's init in $(BENCH_DIR)/coldstart-profile.txt
	$(CARGO) build --profile profiling --locked -p xtask -p quayhook
	mkdir -p $(BENCH_DIR)
	perf record -e cpu-clock -F 20000 -g -o $(BENCH_DIR)/coldstart.perf -- \
	  $(PROFILING)/xtask coldstart --bin $(PROFILING)/quayhook --runs $(BENCH_RUNS) \
	  --out $(BENCH_DIR)/coldstart-profiled.json
	perf report -i $(BENCH_DIR)/coldstart.perf --comm quayhook --percentage relative \
	  --no-children --sort sym --stdio -g none > $(BENCH_DIR)/coldstart-profile.txt
	grep -v '^#' $(BENCH_DIR)/coldstart-profile.txt | grep -v '^$$' | head -25

.PHONY: bench-report
bench-report: ## Regenerate BENCHMARKS.md from the latest measurements in target/bench
	$(REPORT)

# cargo-fuzz drives libFuzzer through nightly-only rustc flags (-Cpasses=sancov-module and
# friends need -Z options); RUSTC_BOOTSTRAP=1 lets the one stable toolchain accept them.
# No sanitizer: the code is safe Rust, and panics, overflows (debug assertions), stack
# overflows, timeouts and OOMs are what libFuzzer catches here.
FUZZ_ENV  := RUSTC_BOOTSTRAP=1
FUZZ_OPTS := --release --debug-assertions --sanitizer none

.PHONY: fuzz-tools
fuzz-tools:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install --locked cargo-fuzz --version $(CARGO_FUZZ_VERSION)

.PHONY: fuzz
fuzz: fuzz-tools ## Run every fuzz target for FUZZ_SECONDS (default 60) each; executions and findings into BENCHMARKS.md
	mkdir -p $(BENCH_DIR)
	$(FUZZ_ENV) $(CARGO) fuzz build $(FUZZ_OPTS)
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t fuzz/seeds/$$t fuzz/regressions/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  rc=0; $(FUZZ_ENV) $(CARGO) fuzz run $(FUZZ_OPTS) $$t fuzz/corpus/$$t fuzz/seeds/$$t fuzz/regressions/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
	    -max_len=65536 > $(BENCH_DIR)/fuzz-$$t.log 2>&1 || rc=$$?; \
	  echo $$rc > $(BENCH_DIR)/fuzz-$$t.rc; \
	  grep -E '^(Done|stat::number_of_executed_units)|SUMMARY' $(BENCH_DIR)/fuzz-$$t.log || true; \
	done
	$(CARGO) run --quiet --locked -p xtask -- fuzz-summary --dir $(BENCH_DIR) \
	  --seconds $(FUZZ_SECONDS) --targets "$(FUZZ_TARGETS)" \
	  --engine "cargo-fuzz $$(cargo fuzz --version 2>/dev/null | awk '{print $$2}') with libFuzzer (libfuzzer-sys), RUSTC_BOOTSTRAP=1 on $$(rustc -V | cut -d' ' -f1-2), --sanitizer none, debug assertions on" \
	  --out $(BENCH_DIR)/fuzz.json
	$(REPORT)
	@if ls fuzz/artifacts/*/* >/dev/null 2>&1; then \
	  echo "fuzz: findings in fuzz/artifacts (reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none TARGET FILE)"; exit 1; fi

.PHONY: loadtest
loadtest: venv ## Burst load: 1,000 pushes in bursts of 50 with 5% API failures, 300 over HTTP beside a hostile mix, 1,000 during an API outage then drained by the worker; into BENCHMARKS.md
	mkdir -p $(BENCH_DIR)
	QUAYHOOK_LOADTEST_OUT=$(abspath $(BENCH_DIR))/loadtest.json QUAYHOOK_LOADTEST_OUTAGE_PUSHES=1000 \
	  $(CARGO) test --release --locked --test loadtest -- --nocapture
	$(CARGO) run --quiet --locked -p xtask -- machine --merge $(BENCH_DIR)/loadtest.json
	$(REPORT)
