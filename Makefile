# Two entry points: `make demo` (local stack) and `make test` (lint, the suite, the VM tests).
# `make test-fast`: lint + everything but the VMs (~7 min); `make test-deploy`: the VM tests alone (~14 min).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast test-deploy vm-deps lint bench clean

# What the VM tests need on the machine (Debian packages; apt-get as root, only what is missing).
VM_DEBS := qemu-system-x86 qemu-utils mmdebstrap e2fsprogs openssh-client

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python -m polymm.demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The fast suite first (a broken build fails in minutes), then the real Debian 12 VMs.
test: test-fast test-deploy

test-fast: lint
	$(BIN)/pytest --ignore=tests/deploy/test_vm.py

vm-deps:
	@missing=""; for p in $(VM_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "vm-deps: all present ($(VM_DEBS))"; \
	elif [ "$$(id -u)" != 0 ]; then echo "vm-deps: need root to apt-get install$$missing"; exit 2; \
	else apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

# Real Debian 12 VMs: image build, converge, idempotence, verify (molecule/default, tests/vm/).
test-deploy: install vm-deps
	$(BIN)/pytest tests/deploy/test_vm.py -s -p no:cacheprovider --timeout=3600

bench: install
	$(BIN)/python bench/relay_latency.py --quick

clean:
	rm -rf $(VENV) demo-data .pytest_cache .ruff_cache .vm-cache
