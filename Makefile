# recordengine-bridge: build, test and run locally.
#
#   make test    run every test (starts its own AWS emulator on 127.0.0.1)
#   make demo    run the whole pipeline locally on the invoice fixtures
#   make dev     start the local stack and keep it running until Ctrl-C
#   make bench   measure cold start, latency, memory, binary size and burst
#   make lint    cargo fmt --check, clippy, cfn-lint and sam validate

SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
CARGO ?= cargo

.PHONY: all venv build test lint fmt clippy cfn-lint demo dev bench clean

all: build

# One virtual environment per tool set, because MiniStack and the SAM CLI pin
# different botocore versions.
venv: $(VENV)/ministack/.installed $(VENV)/sam/.installed $(VENV)/lint/.installed

$(VENV)/%/.installed: infra/requirements-%.txt
	$(PYTHON) -m venv $(VENV)/$*
	$(VENV)/$*/bin/pip install --quiet --disable-pip-version-check -r $<
	touch $@

build:
	$(CARGO) build --workspace

test: venv
	$(CARGO) test --workspace

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

cfn-lint: $(VENV)/lint/.installed
	$(VENV)/lint/bin/cfn-lint template.yaml

lint: venv cfn-lint
	$(CARGO) fmt --all --check
	$(MAKE) clippy

# Benchmarks; docs/benchmarks.md describes each figure. Builds the function
# binaries as `sam build` does (cargo lambda build --release), then runs
# bridge-bench, which writes target/bench/report.json and prints a table.
# The burst step builds bridgectl and starts its own stack with `bridgectl dev up`.
# BENCH_ARGS passes options, e.g. BENCH_ARGS=--skip-burst or --runs 50.
LAMBDA_BINARIES := bridge-webhook bridge-dispatch bridge-s3-upload bridge-scheduled-upload bridge-dlq-alert bridge-sweep
BENCH_ARGS ?=

bench: $(VENV)/ministack/.installed $(VENV)/sam/.installed
	PATH="$(CURDIR)/$(VENV)/sam/bin:$$PATH" $(CARGO) lambda build --release $(addprefix --bin ,$(LAMBDA_BINARIES))
	$(CARGO) build -p bridge-bench
	target/debug/bridge-bench all $(BENCH_ARGS)

# The local stack: sam build and sam deploy of template.yaml to MiniStack on
# 127.0.0.1, with the RecordEngine simulator and the destination sinks, until
# Ctrl-C (docs/local-stack.md). DEV_ARGS passes options to bridgectl dev up,
# e.g. DEV_ARGS='--parameter LogLevel=debug'.
DEV_ARGS ?=
DEMO_ARGS ?=

# The main job on the bundled invoices (docs/local-stack.md): a local stack
# of its own, every invoice dropped into S3, one delivery faulted into the
# dead-letter queue and redriven; writes target/demo/report.json and exits 0
# only when every document reached its destinations exactly once.
demo: $(VENV)/ministack/.installed $(VENV)/sam/.installed
	$(CARGO) run -p bridgectl -- dev demo $(DEMO_ARGS)

dev: $(VENV)/ministack/.installed $(VENV)/sam/.installed
	$(CARGO) run -p bridgectl -- dev up $(DEV_ARGS)

clean:
	$(CARGO) clean
	rm -rf $(VENV) .aws-sam
