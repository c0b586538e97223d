# Convenience front end for CMake/CTest. The two commands of the README:
#   make run    set up (Debian packages), build, and run fitsyncd with its embedded Redis
#   make test   set up, build with warnings as errors, and run every test (ctest)
# Others: make build, make sanitize (ASan+UBSan build + tests), make format, make format-check.
# make build (so run and test too) also installs the dashboard's npm libraries in web/.

BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
PORT ?= 8080
DATA ?= data

.PHONY: all setup web build run run-cluster test sanitize check-valgrind fuzz bench bench-cost format format-check clean

all: build

setup:
	@tools/bootstrap.sh

# The staff dashboard's libraries (Chart.js), which fitsyncd serves from
# web/node_modules: installed from web/package-lock.json when node_modules is
# missing or the lock file is newer than the last install.
WEB_DEPS := web/node_modules/.package-lock.json
$(WEB_DEPS): web/package-lock.json | setup
	@cd web && npm ci --silent --no-audit --no-fund
	@touch $@

web: $(WEB_DEPS)

build: setup $(WEB_DEPS)
	@cmake -S . -B $(BUILD) -DFITSYNC_WERROR=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@$(BUILD)/fitsyncd --port $(PORT) --data-dir $(DATA) --demo-token

# fitsyncd on a local Redis Cluster (tools/redis-cluster.sh: 3 primaries, 1 replica each,
# in $(CLUSTER_DIR); stop it with `tools/redis-cluster.sh stop $(CLUSTER_DIR)`), 16 shards.
CLUSTER_DIR ?= $(DATA)-cluster
run-cluster: build
	@tools/redis-cluster.sh start $(CLUSTER_DIR) >/dev/null
	@FITSYNC_REDIS_CLUSTER=$$(tools/redis-cluster.sh seeds $(CLUSTER_DIR)) FITSYNC_SHARDS=$${FITSYNC_SHARDS:-16} \
		$(BUILD)/fitsyncd --port $(PORT) --data-dir $(DATA) --demo-token

test: build
	@cd $(BUILD) && ctest --output-on-failure -j 2

sanitize: setup $(WEB_DEPS)
	@cmake -S . -B $(ASAN_BUILD) -DFITSYNC_WERROR=ON -DFITSYNC_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j 2

# Unit and integration tests under valgrind memcheck (errors and definite/indirect leaks fail).
VALGRIND_BUILD ?= build-valgrind
check-valgrind: setup
	@cmake -S . -B $(VALGRIND_BUILD) -DFITSYNC_WERROR=ON -DFITSYNC_VALGRIND=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build $(VALGRIND_BUILD) -j $(JOBS)
	@cd $(VALGRIND_BUILD) && ctest --output-on-failure -L 'unit|integration'

# libFuzzer: every parser's harness (tests/fuzz/fuzz_<parser>.c) for FUZZ_SECONDS each
# (default 60), seeds in tests/fuzz/corpus/<parser>/, what it finds kept in build-fuzz/corpus/.
FUZZ_SECONDS ?= 60
FUZZERS := envelope activity summary profile token time board
fuzz: setup
	@CC=clang cmake -S . -B build-fuzz -DFITSYNC_WERROR=ON -DFITSYNC_SANITIZE=ON -DFITSYNC_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target fuzzers
	@for f in $(FUZZERS); do \
		echo "fuzz: $$f for $(FUZZ_SECONDS) s"; \
		mkdir -p build-fuzz/corpus/$$f; \
		build-fuzz/tests/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=1 \
			build-fuzz/corpus/$$f tests/fuzz/corpus/$$f >build-fuzz/fuzz_$$f.log 2>&1 \
			|| { tail -n 60 build-fuzz/fuzz_$$f.log; exit 1; }; \
		grep -E '^stat::number_of_executed_units|^Done' build-fuzz/fuzz_$$f.log; \
	done

# The benchmark suite (tools/bench.sh, about 6 minutes): its own fitsyncd and Redis in a
# temporary directory, BENCH_RUNS runs of each scenario, medians into BENCHMARKS.md.
BENCH_RUNS ?= 3
bench: build
	@tools/bench.sh --runs $(BENCH_RUNS) --build-dir $(BUILD) --update-doc BENCHMARKS.md

# The flat-cost benchmark (tools/bench_cost.sh, about 5 minutes): a new and a heavy member
# population, Redis commands and usec per upload against a 12-HINCRBY reference Function.
bench-cost: build
	@tools/bench_cost.sh --runs $(BENCH_RUNS) --build-dir $(BUILD) --update-doc BENCHMARKS.md

format:
	@git ls-files '*.c' '*.h' | xargs clang-format -i

format-check:
	@git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(VALGRIND_BUILD) build-fuzz
