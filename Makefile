PY ?= python3

.PHONY: help install build wheel sdist lint lint-deploy test test-rust test-py demo bench

help: ## show the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install: ## install system and Python dependencies, build the extension (idempotent)
	PY=$(PY) bash scripts/install.sh

build: ## rebuild the extension in place after Rust changes
	$(PY) -m pip install --no-build-isolation --no-deps -e .

wheel: ## release wheels into target/wheels: one abi3 wheel for CPython >= 3.11, one per 3.9/3.10 interpreter found, and the sdist
	$(PY) -m maturin build --release --out target/wheels
	$(PY) -m maturin sdist --out target/wheels
	for py in python3.9 python3.10; do \
		if command -v $$py >/dev/null; then \
			$(PY) -m maturin build --release --out target/wheels -i $$py \
				--features python,pyo3/extension-module; \
		fi; \
	done

lint: lint-deploy ## rustfmt, clippy, ruff, mypy, and lint-deploy
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p mosec-engine --features python --all-targets -- -D warnings
	$(PY) -m ruff check mosec tests examples benchmarks scripts
	$(PY) -m ruff format --check mosec tests examples benchmarks scripts
	$(PY) -m mypy
	$(PY) -m mypy.stubtest mosec._engine --mypy-config-file pyproject.toml

lint-deploy: ## hadolint on the Dockerfile, the Kubernetes manifests against their schemas (strict)
	"$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/hadolint" deploy/docker/Dockerfile
	$(PY) scripts/validate_manifests.py

test-rust: ## Rust unit and integration tests
	cargo test --workspace

test-py: ## end-to-end pytest on real servers
	$(PY) -m pytest tests benchmarks/tests

test: install test-rust test-py ## everything CI runs

demo: ## install the runtime and the demo extra only, then run the demo: start a server, send requests, print answers, stop
	PY=$(PY) bash scripts/install.sh demo
	$(PY) examples/demo.py

bench: install ## benchmark against upstream mosec (see benchmarks/README.md)
	$(PY) -m benchmarks run
