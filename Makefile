# smtpcheck: every target installs what it needs first (see `deps`).
SWIFT ?= swift
BIN := .build/debug/smtpcheck
# Extra arguments for `make run`, e.g. make run ARGS="--tag relay --verbose"
ARGS ?=

.PHONY: all deps build run test lint format golden docs test-browser scenarios conformance-postfix conformance-exim conformance-opensmtpd bench bench-smoke built-in static manual install install-check dist clean help \
	fuzz fuzz-build fuzz-run fuzz-smoke test-asan test-tsan load load-smoke

all: build

help:
	@echo "make run      the scenario battery against the in-process reference server"
	@echo "make test     the test suite"
	@echo "make lint     swift format lint --strict"
	@echo "make format   swift format in place"
	@echo "make bench    capture reading, start-up, suite, serve and scaling beside tshark, tcpdump, swaks, smtp-sink (release)"
	@echo "make fuzz     each libFuzzer target for FUZZ_SECONDS (default 60); fuzz-smoke: 5 s each"
	@echo "make test-asan / test-tsan   the suite under the address / thread sanitizer"
	@echo "make load     1,000 concurrent clients, 100,000 deliveries against serve (release); load-smoke: a short one"
	@echo "make golden   record the golden reports and --help texts anew (review the diff)"
	@echo "make docs     write docs/policy.md's rule reference from the rule catalogue"
	@echo "make test-browser  the HTML report in headless Chromium (installed when missing), with screenshots"
	@echo "make install  the static binary, manual and completions under PREFIX (default /usr/local); make dist: a tarball"
	@echo "make built-in write scenarios/ (the battery and shipped policies) into the binary again"
	@echo "make scenarios             every scenario file loads and the battery passes in-process"
	@echo "make conformance-postfix   the battery against Postfix on loopback (root: installs it)"
	@echo "make conformance-exim      the same against Exim, unpacked into fixtures/exim (root)"
	@echo "make conformance-opensmtpd the same against OpenSMTPD, unpacked into fixtures/opensmtpd (root)"

# Swift comes with the machine; libpcap-dev is installed when missing (as root),
# or the exact command is printed.
deps:
	@command -v $(SWIFT) >/dev/null 2>&1 || { echo "Swift 6.3 is needed: see https://www.swift.org/install/"; exit 1; }
	@if ! pkg-config --exists libpcap 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing libpcap-dev"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpcap-dev pkg-config >/dev/null; \
	  else \
	    echo "libpcap-dev is missing; install it with:  sudo apt-get install -y libpcap-dev pkg-config"; exit 1; \
	  fi; \
	fi

build: deps
	$(SWIFT) build

run: build
	$(BIN) run $(ARGS)

# The battery in both HELO timings, as an MX, and as submission (TLS required,
# every case upgraded with STARTTLS); the suite itself also runs all of these.
scenarios: build
	$(BIN) run
	$(BIN) run --policy scenarios/policies/default-site-delayed.yaml
	$(BIN) run --policy scenarios/policies/mx.yaml
	$(BIN) run --policy scenarios/policies/submission.yaml --tls starttls
	$(BIN) run --tls implicit
	$(BIN) run --policy scenarios/policies/greet-pause.yaml --jobs 32

# The battery against a real Postfix on loopback (root: installs and starts it).
conformance-postfix: build
	BIN=$(BIN) fixtures/postfix/conformance.sh

conformance-exim: build
	BIN=$(BIN) fixtures/exim/conformance.sh

conformance-opensmtpd: build
	BIN=$(BIN) fixtures/opensmtpd/conformance.sh

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

lint:
	$(SWIFT) format lint --strict --recursive Package.swift Sources Tests

# The HTML report in headless Chromium (Debian's chromium, installed when
# missing): DOM assertions, filters, no request leaving the page, and
# screenshots in .build/browser-screenshots.
test-browser: deps
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null || exit 1; \
	  else echo "chromium is missing: sudo apt-get install -y chromium"; exit 1; fi; }
	$(SWIFT) build --build-tests
	SMTPCHECK_BROWSER=1 $(SWIFT) test --skip-build --filter BrowserReportTests
	@ls .build/browser-screenshots

# Benchmarks (release build), medians of BENCH_RUNS interleaved rounds after a warm-up:
# capture reading (a mixed capture of BENCH_MB megabytes, read in process at
# 1x and 3x, then smtpcheck's capture commands beside tshark's SMTP field
# extraction and tcpdump's read floor); start-up; the seed battery beside
# one swaks process per case; smtp-source against serve, smtp-sink and (as
# root) the Postfix conformance fixture's smtpd; and scaling (check over
# 1x-10x the sessions, serve and smtp-sink over 100-BENCH_SCALE_SESSIONS).
# It times the binary `make install` installs (the static build); the
# benchmark itself is a release build beside it. Installs what it compares
# against where it can (root).
BENCH_MB ?= 300
BENCH_RUNS ?= 5
BENCH_MESSAGES ?= 20000
BENCH_SCALE_SESSIONS ?= 10000
BENCH_DIR ?= /tmp
bench: export SMTPCHECK_BENCH_BINARY = $(CURDIR)/$(STATIC_BIN)
bench: deps
	@for tool in tshark tcpdump swaks smtp-source; do \
	  command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] && continue; \
	  package=$$tool; [ $$tool = smtp-source ] && package=postfix; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$package >/dev/null || exit 1; \
	  else echo "$$tool is missing (the comparison skips it): sudo apt-get install -y $$package"; fi; \
	done
	$(MAKE) --no-print-directory static
	@echo "timing $(STATIC_BIN), the binary make install installs"
	$(SWIFT) build -c release --product smtpcheck-bench
	@small=$(BENCH_DIR)/smtpcheck-bench-$(BENCH_MB).pcap; large=$(BENCH_DIR)/smtpcheck-bench-3x$(BENCH_MB).pcap; \
	trap 'rm -f $$small $$large $$small.txt $$large.txt' EXIT; \
	.build/release/smtpcheck-bench capture $(BENCH_MB) $$small > $$small.txt && cat $$small.txt && \
	.build/release/smtpcheck-bench capture $$(( $(BENCH_MB) * 3 )) $$large > $$large.txt && cat $$large.txt && \
	n=$$(sed -n 's/.*: \([0-9]*\) sessions.*/\1/p' $$small.txt) && m=$$(sed -n 's/.*: \([0-9]*\) sessions.*/\1/p' $$large.txt) && \
	.build/release/smtpcheck-bench read $$small $$n && .build/release/smtpcheck-bench read $$large $$m && \
	.build/release/smtpcheck-bench compare $$small $(BENCH_RUNS)
	.build/release/smtpcheck-bench startup $$(( $(BENCH_RUNS) * 2 ))
	.build/release/smtpcheck-bench suite scenarios $(BENCH_RUNS)
	@postfix=; \
	if [ "$$(id -u)" = 0 ] && SMTPCHECK_POSTFIX_STATE=$(BENCH_DIR)/smtpcheck-bench-postfix fixtures/postfix/setup.sh >/dev/null; then \
	  postfix=127.0.0.1:10025; \
	else echo "Postfix's smtpd is left out of the server comparison: fixtures/postfix/setup.sh starts it as root"; fi; \
	BENCH_POSTFIX=$$postfix .build/release/smtpcheck-bench serve $(BENCH_MESSAGES) $(BENCH_RUNS); rc=$$?; \
	if [ -n "$$postfix" ]; then fixtures/postfix/stop.sh >/dev/null; fi; exit $$rc
	.build/release/smtpcheck-bench scale-capture $(BENCH_MB) $(BENCH_DIR) $(BENCH_RUNS)
	.build/release/smtpcheck-bench scale-serve $(BENCH_SCALE_SESSIONS) $(BENCH_RUNS)

# The benchmark's path in seconds (CI: it cannot rot; no time is asserted).
bench-smoke:
	$(MAKE) bench BENCH_MB=5 BENCH_RUNS=1 BENCH_MESSAGES=500 BENCH_SCALE_SESSIONS=1000

# Installing: the binary linked with the Swift runtime and Foundation
# statically (it runs where no Swift is installed; libpcap stays a system
# library), the manual from argument-parser's generate-manual plugin, and
# bash, zsh and fish completions that complete option values.
PREFIX ?= /usr/local
VERSION := $(shell sed -n 's/^ *version: "\(.*\)",$$/\1/p' Sources/smtpcheck/SMTPCheck.swift)
STATIC_BIN := .build-static/release/smtpcheck
MANUAL := .build/plugins/GenerateManual/outputs/smtpcheck/smtpcheck.1

static: deps
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-static --product smtpcheck

manual: deps
	$(SWIFT) package plugin generate-manual --configuration debug

install: static manual
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions \
	  $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	install -s -m 755 $(STATIC_BIN) $(DESTDIR)$(PREFIX)/bin/smtpcheck
	install -m 644 $(MANUAL) $(DESTDIR)$(PREFIX)/share/man/man1/smtpcheck.1
	$(STATIC_BIN) --generate-completion-script bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/smtpcheck
	$(STATIC_BIN) --generate-completion-script zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_smtpcheck
	$(STATIC_BIN) --generate-completion-script fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/smtpcheck.fish
	@echo "installed smtpcheck $(VERSION) under $(DESTDIR)$(PREFIX)"

# CI: install into a temporary prefix, then run the installed binary from /
# with the toolchain's runtime libraries hidden under an empty tmpfs in a
# mount namespace of its own (root), so that only what it carries is there.
install-check:
	@prefix=$$(mktemp -d); trap 'rm -rf $$prefix' EXIT; \
	$(MAKE) --no-print-directory install PREFIX=$$prefix >/dev/null || exit 1; \
	bin=$$prefix/bin/smtpcheck; \
	if ldd $$bin | grep -i swift; then echo "install-check: the binary links the Swift runtime dynamically"; exit 1; fi; \
	for f in share/man/man1/smtpcheck.1 share/bash-completion/completions/smtpcheck share/zsh/site-functions/_smtpcheck \
	  share/fish/vendor_completions.d/smtpcheck.fish; do test -s $$prefix/$$f || { echo "install-check: $$f is missing"; exit 1; }; done; \
	runtime=$$(dirname $$(readlink -f $$(command -v $(SWIFT))))/../lib/swift/linux; \
	test -f $$runtime/libswiftCore.so || { echo "install-check: no Swift runtime at $$runtime to hide"; exit 1; }; \
	if [ "$$(id -u)" != 0 ]; then echo "install-check: hiding the toolchain needs root (unshare -m); ran without it"; \
	  cd / && $$bin run --tag helo --policy mx >/dev/null && echo "install-check: ok (toolchain not hidden)"; exit $$?; fi; \
	unshare -m sh -c "mount -t tmpfs none $$runtime && test ! -e $$runtime/libswiftCore.so && cd / && \
	  $$bin --version && $$bin list >/dev/null && $$bin run --tag helo --policy mx | tail -1" && \
	echo "install-check: ok: the installed binary ran from / with $$runtime hidden"

# A release tarball: the static binary, manual, completions, README and
# LICENSE, and its SHA-256.
DIST := smtpcheck-$(VERSION)-linux-$(shell uname -m)
dist: deps
	rm -rf .build/dist && $(MAKE) --no-print-directory install PREFIX=/ DESTDIR=$(CURDIR)/.build/dist/$(DIST)
	cp README.md LICENSE .build/dist/$(DIST)/
	tar -C .build/dist -czf .build/dist/$(DIST).tar.gz $(DIST)
	cd .build/dist && sha256sum $(DIST).tar.gz > $(DIST).tar.gz.sha256 && cat $(DIST).tar.gz.sha256
	@echo "wrote .build/dist/$(DIST).tar.gz"

# The battery and the shipped policies, written into the binary
# (Sources/*/BuiltIn*.swift) from scenarios/: run after changing them.
built-in:
	python3 scenarios/built-in.py
	$(SWIFT) format --in-place Sources/SMTPScenarios/BuiltInScenarios.swift Sources/SMTPPolicy/BuiltInPolicies.swift

# docs/policy.md's rule reference, written from the rule catalogue
# (PolicyReferenceTests fails when it is stale).
docs: build
	python3 -c 'import subprocess,sys; d=open("docs/policy.md").read(); g=subprocess.run([".build/debug/smtpcheck","explain","--markdown"],capture_output=True,text=True,check=True).stdout; b=d.index(g.splitlines()[0]); e=d.index(g.splitlines()[-1],b)+len(g.splitlines()[-1])+1; open("docs/policy.md","w").write(d[:b]+g+d[e:])'
	git status --short docs/policy.md

# Golden files (fixtures/golden/): recorded anew on purpose, then checked.
golden: deps
	$(SWIFT) build --build-tests
	-RECORD_GOLDEN=1 $(SWIFT) test --skip-build --filter 'Golden' >/dev/null 2>&1
	$(SWIFT) test --skip-build --filter 'Golden'
	git status --short fixtures/golden

format:
	$(SWIFT) format --in-place --recursive Package.swift Sources Tests

clean:
	rm -rf .build

# libFuzzer targets (Sources/fuzz-*), built alone with the fuzzer and address
# sanitizers into .build-fuzz. Each runs FUZZ_SECONDS from its seeds
# (fixtures/fuzz/TARGET) and a working corpus in .build-fuzz/corpus; a crash
# input lands in .build-fuzz/crashes/TARGET/ and fails the run: copy it to
# fixtures/fuzz/regressions/TARGET/ and FuzzCorpusTests keeps it fixed; every
# run (fuzz-smoke in CI too) starts by executing those inputs under the
# sanitizers, so a leak found once is checked by LeakSanitizer from then on.
FUZZ_TARGETS := replies commands addresses capture scenario policy server
FUZZ_SECONDS ?= 60
# Stop each target after this many executions too (-1: no limit), e.g.
# make fuzz FUZZ_SECONDS=3600 FUZZ_RUNS=1000000
FUZZ_RUNS ?= -1
FUZZ_MAX_LEN ?= 8192
# The sanitizers go to swiftc as one flag: `--sanitize=fuzzer
# --sanitize=address` gives swiftc two -sanitize= flags, the later one wins,
# and the Swift code was built without coverage (libFuzzer: "Is the code
# instrumented for coverage?"): blind fuzzing. make fuzz checks for coverage.
FUZZ_CONFIG ?= debug
FUZZ_FLAGS := -c $(FUZZ_CONFIG) --scratch-path .build-fuzz --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address

fuzz-build: deps
	for t in $(FUZZ_TARGETS); do $(SWIFT) build $(FUZZ_FLAGS) --product fuzz-$$t || exit 1; done

# Build every target first, then run: building the products one after
# another is incremental, but builds of different products interleaved in
# one scratch folder re-plan and rebuild everything.
fuzz: fuzz-build
	$(MAKE) fuzz-run

fuzz-run:
	@printf "%-10s %12s %10s %8s %10s\n" target executions "exec/s" crashes "new inputs"
	@status=0; for t in $(FUZZ_TARGETS); do \
	  mkdir -p .build-fuzz/corpus/$$t .build-fuzz/crashes/$$t; \
	  regressions=$$( [ -d fixtures/fuzz/regressions/$$t ] && echo fixtures/fuzz/regressions/$$t ); \
	  .build-fuzz/$(FUZZ_CONFIG)/fuzz-$$t .build-fuzz/corpus/$$t fixtures/fuzz/$$t $$regressions -max_total_time=$(FUZZ_SECONDS) -runs=$(FUZZ_RUNS) \
	    -max_len=$(FUZZ_MAX_LEN) -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
	    -artifact_prefix=.build-fuzz/crashes/$$t/ > .build-fuzz/$$t.log 2>&1 || status=1; \
	  runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' .build-fuzz/$$t.log); \
	  rate=$$(sed -n 's/^stat::average_exec_per_sec: *//p' .build-fuzz/$$t.log); \
	  crashes=$$(ls .build-fuzz/crashes/$$t | grep -cE '^(crash|leak|timeout|oom)-'); \
	  added=$$(sed -n 's/^stat::new_units_added: *//p' .build-fuzz/$$t.log); \
	  printf "%-10s %12s %10s %8s %10s\n" $$t "$${runs:-?}" "$${rate:-?}" $$crashes "$${added:-?}"; \
	  grep -q "INITED cov:" .build-fuzz/$$t.log || { echo "  $$t: no coverage (not instrumented?)"; status=1; }; \
	done; \
	if [ $$status != 0 ]; then echo "a fuzz target failed: see .build-fuzz/TARGET.log and .build-fuzz/crashes/"; fi; exit $$status

fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=5

# The suite under the sanitizers, each in its own build folder, one test at
# a time (a sanitized build is several times slower: run in parallel, cases
# pass their time-outs), with the time and memory bounds off (see
# TestEnvironment.sanitized).
test-asan: deps
	$(SWIFT) build --build-tests --scratch-path .build-asan --sanitize=address
	SMTPCHECK_SANITIZER=address ASAN_OPTIONS=detect_leaks=0 $(SWIFT) test --skip-build --scratch-path .build-asan --sanitize=address --no-parallel

test-tsan: deps
	$(SWIFT) build --build-tests --scratch-path .build-tsan --sanitize=thread
	SMTPCHECK_SANITIZER=thread $(SWIFT) test --skip-build --scratch-path .build-tsan --sanitize=thread --no-parallel

# The reference server under load: LOAD_CLIENTS concurrent clients (spread
# over 25 loopback source addresses) run LOAD_SESSIONS whole deliveries
# against `serve` (release build); sessions/s, latency percentiles, failures,
# and the server's resident size every 10,000 sessions and at its peak.
LOAD_CLIENTS ?= 1000
LOAD_SESSIONS ?= 100000
LOAD_CONFIG ?= release
load: deps
	$(SWIFT) build -c $(LOAD_CONFIG) --product smtpcheck
	$(SWIFT) build -c $(LOAD_CONFIG) --product smtpcheck-bench
	@out=$$(mktemp); .build/$(LOAD_CONFIG)/smtpcheck serve --listen 127.0.0.1:0 --tls none > $$out & pid=$$!; \
	while ! grep -q listening $$out; do kill -0 $$pid || exit 2; sleep 0.1; done; \
	port=$$(head -1 $$out | grep -o '[0-9]*$$'); \
	.build/$(LOAD_CONFIG)/smtpcheck-bench load --port $$port --clients $(LOAD_CLIENTS) --sessions $(LOAD_SESSIONS) --pid $$pid; \
	status=$$?; kill $$pid; wait $$pid; rm -f $$out; exit $$status

# Debug build (make test built it already): this checks that the load path
# works, not how fast it is.
load-smoke:
	$(MAKE) load LOAD_CLIENTS=100 LOAD_SESSIONS=2000 LOAD_CONFIG=debug
