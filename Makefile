# ambit: every target does its own set-up on a fresh machine.
#   make demo   the main job (arrives with the L4 mesh issue)
#   make test   make check, then the whole test suite
#   make bench  the benchmarks (results go to BENCHMARKS.md)
#   make chaos  the full chaos suite (ambit chaos suite --runs 3 on a bookinfo cluster)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSSTAMP := $(VENV)/.sysdeps
PYTEST_ARGS ?=

.PHONY: all setup sysdeps check test test-unit test-integration bench chaos proto demo fmt clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

$(SYSSTAMP): scripts/sysdeps.sh $(STAMP)
	bash scripts/sysdeps.sh
	touch $(SYSSTAMP)

setup: $(STAMP) $(SYSSTAMP)

sysdeps: $(SYSSTAMP)

check: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

test: check
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: setup
	$(BIN)/pytest tests/integration tests/interop $(PYTEST_ARGS)

# The full chaos suite (every experiment, full length, 3 runs each) on a bookinfo cluster; `make test` runs
# the reduced one (tests/chaos). Report: chaos-report/ (summary.md, per experiment report.md and images).
chaos: setup
	bash scripts/chaos.sh

bench: setup
	$(BIN)/ambit bench hbone --out BENCHMARKS.md
	$(BIN)/ambit bench mesh --out BENCHMARKS.md

# Regenerate src/ambit/xds/pb from proto/ (protobuf + grpc + .pyi). protoc writes modules named after the
# proto paths (ambit.<api>.v1); they are moved under ambit.xds.pb and their imports rewritten to match.
PROTO_OUT := src/ambit/xds/pb
proto: setup
	rm -rf $(VENV)/proto-gen && mkdir -p $(VENV)/proto-gen
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=$(VENV)/proto-gen --pyi_out=$(VENV)/proto-gen \
		--grpc_python_out=$(VENV)/proto-gen $$(find proto -name '*.proto' | sort)
	mkdir -p $(PROTO_OUT) && find $(PROTO_OUT) -name '*_pb2*.py*' -delete
	cd $(VENV)/proto-gen/ambit && for f in $$(find . -name '*_pb2*.py*' | sort); do \
		mkdir -p "$(CURDIR)/$(PROTO_OUT)/$$(dirname $$f)" && \
		sed -E 's/^(from|import) ambit\.([a-z_]+\.v[0-9]+)/\1 ambit.xds.pb.\2/' "$$f" \
			> "$(CURDIR)/$(PROTO_OUT)/$$f"; \
	done
	for d in $$(find $(PROTO_OUT) -type d); do \
		test -f $$d/__init__.py || echo '"""Generated protobuf code (make proto); do not edit."""' > $$d/__init__.py; \
	done
	rm -rf $(VENV)/proto-gen

demo: setup
	$(BIN)/ambit --cluster demo demo

fmt: setup
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
