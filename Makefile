# Every target creates .venv on first use, so a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

BROWSER_STAMP := $(VENV)/.chromium
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
SAM_VENV := .venv-sam
# sam build for python3.12 needs a real python3.12 first on PATH (not a pyenv shim)
PYTHON312 ?= $(shell for p in $$(command -v python3.12) $$HOME/.pyenv/versions/3.12*/bin/python3.12; do "$$p" -c 'import sys; print(sys.executable)' 2>/dev/null && break; done)

.PHONY: demo test check bench sam-build clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "start-engines needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# checkov pins an old boto3, so it lives in a venv of its own
$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==3.3.*'
	@touch $(CHECKOV_STAMP)

# The browser test's headless Chromium and its driver, from Debian's packages. Where they cannot
# be installed (no apt-get, not root and no sudo, no network) the build goes on and that one
# test skips, saying what is missing; the stamp is left out so the next run tries again.
$(BROWSER_STAMP): | $(STAMP)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		touch $@; exit 0; \
	fi; \
	sudo=; if [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null; then sudo="sudo -n"; fi; \
	echo "installing chromium and chromium-driver from Debian's packages for the browser test"; \
	if command -v apt-get >/dev/null \
		&& $$sudo apt-get update -qq \
		&& $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
		&& command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		touch $@; \
	else \
		echo "could not install chromium and chromium-driver (apt-get, root or sudo, network):" \
			"the browser test will skip"; \
	fi

demo: $(STAMP)
	$(BIN)/python -m start_engines.local.demo

# two workers, each with its own emulator: the suite's wall time halves on 2 cores; a module's
# tests stay on one worker, so its module fixtures (a deployed stack) are built once
test: $(STAMP) $(CHECKOV_STAMP) $(BROWSER_STAMP)
	CHECKOV=$(CHECKOV_VENV)/bin/checkov $(BIN)/python -m pytest -q -n 2 --dist loadfile

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

# Optional: the AWS SAM CLI in a venv of its own, then `sam validate --lint` and `sam build`.
sam-build:
	@test -n "$(PYTHON312)" || (echo "sam build needs python3.12 on PATH (PYTHON312=/path/to/python3.12)"; exit 2)
	test -x $(SAM_VENV)/bin/sam || ($(PYTHON312) -m venv $(SAM_VENV) && $(SAM_VENV)/bin/pip install --quiet aws-sam-cli)
	PATH="$(dir $(PYTHON312)):$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam validate --lint --region us-east-2
	PATH="$(dir $(PYTHON312)):$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build
	# ship bytecode: Lambda's file system is read-only, so it would compile on every cold start
	$(PYTHON312) -m compileall -q --invalidation-mode unchecked-hash .aws-sam/build

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(SAM_VENV) .aws-sam .mypy_cache .pytest_cache .ruff_cache .artifacts .hypothesis src/*.egg-info
