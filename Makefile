# Everything a fresh clone needs goes through these targets; see README.md.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: venv lint test unit test-lowest dev dev-down demo bench clean chart-crds \
	image image-check image-lock

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

lint: venv
	$(BIN)/ruff check secretsync tests bench sandbox
	$(BIN)/mypy
	$(BIN)/lint-imports

# The README's test command: lint, types, then the whole suite (unit + integration; the
# integration fixtures start the local sandbox, or reuse one started by `make dev`).
test: lint
	$(BIN)/pytest

unit: venv
	$(BIN)/pytest tests/unit

# The declared lower bounds hold: every direct runtime dependency at the lowest version
# pyproject.toml allows (uv's lowest-direct resolution; pip has none), then the unit tests.
LOWEST := .lowest
test-lowest: venv
	rm -rf $(LOWEST) && $(PYTHON) -m venv $(LOWEST)
	$(BIN)/uv pip compile --quiet pyproject.toml --extra all --resolution lowest-direct \
		--python-version 3.11 -o $(LOWEST)/requirements.txt
	$(BIN)/uv pip install --quiet --python $(LOWEST)/bin/python -r $(LOWEST)/requirements.txt \
		pytest pytest-asyncio hypothesis
	$(BIN)/uv pip install --quiet --python $(LOWEST)/bin/python --no-deps -e .
	grep -E '^(kopf|kubernetes|boto3|hvac|google-cloud-secret-manager|azure-keyvault-secrets)==' \
		$(LOWEST)/requirements.txt | tr '\n' ' '; echo
	$(LOWEST)/bin/python -m pytest -q -p no:cacheprovider tests/unit

dev: venv
	$(BIN)/python -m sandbox up

dev-down:
	@if test -x $(BIN)/python; then $(BIN)/python -m sandbox down; else echo "no venv, nothing to stop"; fi

# The controller's OCI image, from Debian packages and the locked wheels, no registry pull
# (sandbox/image.py; cached under ~/.cache/secretsync/image/). image-check rebuilds it from
# nothing and compares the digest; image-lock re-resolves deploy/requirements-image.txt.
image: venv
	$(BIN)/python -m sandbox.image build

image-check: venv
	$(BIN)/python -m sandbox.image check

image-lock: venv
	$(BIN)/python -m sandbox.image lock

demo: venv
	$(BIN)/python -m sandbox.demo

bench: venv
	for f in bench/*.py; do $(BIN)/python $$f || exit 1; done

# The Helm chart ships the CRDs in its crds/ (Helm installs them, never deletes them); copy
# them after editing crds/ (tests/integration/test_helm_chart.py fails while they differ);
# first, the ExternalSecret spec schema is copied into the ClusterExternalSecret CRD.
chart-crds:
	$(PYTHON) crds/embed_external_spec.py
	rm -f deploy/chart/secretsync/crds/*.yaml
	cp crds/*.yaml deploy/chart/secretsync/crds/

clean: dev-down
	rm -rf $(VENV) .dev build *.egg-info
