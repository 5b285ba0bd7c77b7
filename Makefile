# Every target installs what it needs first, so each works on a fresh clone.
# Configuration: environment variables listed in docs/configuration.md.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STACK := $(PY) -m telemetry.local.stack
CHECKOV_VENV := .local/checkov-venv
CHECKOV_VERSION := 3.3.30
# Schema-only stand-ins for the providers in terraform/versions.tf, where the registry is
# out of reach (scripts/terraform_standin/): each schema comes from the prebuilt CDKTF
# package generated from that provider version (google 6.50.0, archive 2.7.1).
TF_VENV := .local/terraform-venv
TF_STANDIN := .local/terraform-standin
TF_SCHEMA_PACKAGES := cdktf-cdktf-provider-google==16.12.1 cdktf-cdktf-provider-archive==11.0.1

.PHONY: help venv system-deps up down status demo test unit lint check-terraform pipelines analytics audit report project \
	bench bench-ingest bench-pipeline bench-analytics fuzz soak clean

help:
	@echo "make demo           run the product end to end on the local stack"
	@echo "make test           lint, static checks, unit and integration tests (starts the stack)"
	@echo "make up / down      start / stop the local stack (writes .local/env)"
	@echo "make pipelines      run both hourly pipelines on the stack from make up (HOUR=YYYY-MM-DDTHH: that hour)"
	@echo "make analytics      run the analytics job once on the stack from make up (SINCE=YYYY-MM-DD: recompute from that day)"
	@echo "make audit          compare the hour folders of the last AUDIT_DAYS days with BigQuery and reprocess those that do not balance (HOUR=... [HOUR_TO=...]: those hours)"
	@echo "make report         the vendor's offline report from the stack from make up: out/report.html and .png"
	@echo "make bench-ingest   load benchmark of the track endpoint against raw storage uploads"
	@echo "make bench-pipeline the pipelines on one hour of 20,000 pings against a plain-Python baseline"
	@echo "make soak           10 minutes of steady traffic while the pipelines run (one killed), then a count (SOAK_SECONDS=60: quick)"
	@echo "make bench-analytics one hourly analytics run on 30 and on 180 days of history, against a full recompute"
	@echo "make fuzz           fuzz the wire format with atheris for FUZZ_SECONDS (600); finds in .local/fuzz/"

venv: $(STAMP)

$(STAMP): requirements.txt constraints.txt functions/requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==24.3.1
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	# The project's own package, editable: code, tests and scripts import `telemetry` from here.
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check
	# bqemulator needs DuckDB's spatial extension and cannot download it here.
	$(PY) -c "from duckdb_extensions import import_extension; import_extension('spatial')"
	touch $@

# Debian packages the tests and benchmarks use: php-cli (PHP's own http_build_query),
# wrk (HTTP load) and chromium (the report's browser check and screenshot, driven by
# Playwright at /usr/bin/chromium). The Pub/Sub emulator and Java come with the Google Cloud CLI.
system-deps:
	@missing=""; command -v php >/dev/null || missing="$$missing php-cli"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing; run: sudo apt-get install$$missing" >&2; exit 1; \
	  fi; \
	fi

up: venv
	$(STACK) up

down:
	@if [ -x $(PY) ]; then $(STACK) down; fi

status: venv
	$(STACK) status

# The demo runs a stack of its own in .local/demo, wiped first so that every run
# starts clean; a stack from `make up` is stopped first (same ports), its data kept.
demo: venv system-deps
	$(STACK) down
	rm -rf .local/demo
	LOCAL_STACK_DIR=.local/demo LOG_LEVEL=WARNING $(STACK) run -- $(PY) scripts/demo.py

# Both pipelines on the local runner (FnApiRunner, see docs/pipelines.md): notification mode, or one hour with HOUR=YYYY-MM-DDTHH.
pipelines: venv
	@test -f .local/env || { echo "the local stack is not up: run make up first" >&2; exit 1; }
	. ./.local/env && for name in tracking deactivation; do \
	  $(PY) -m telemetry.pipelines.build $$name --runner FnApiRunner $(if $(HOUR),--hour $(HOUR)) || exit 1; \
	done

# The analytics job once, on all data present, the current day included.
analytics: venv
	@test -f .local/env || { echo "the local stack is not up: run make up first" >&2; exit 1; }
	. ./.local/env && $(PY) -m telemetry.analytics.job --ensure-tables $(if $(SINCE),--since $(SINCE))

# The audit once on the stack from make up: each hour folder of the window against the
# history and `rejected`; hours that do not balance are processed again here, in hour mode.
audit: venv
	@test -f .local/env || { echo "the local stack is not up: run make up first" >&2; exit 1; }
	. ./.local/env && $(PY) -m telemetry.audit.job $(if $(HOUR),--hour $(HOUR)) $(if $(HOUR_TO),--hour_to $(HOUR_TO))

# The vendor's offline report from the serving copy (MongoDB `analytics`), checked and
# screenshotted in headless Chromium; DAYS=N for another long window.
report: venv system-deps
	@test -f .local/env || { echo "the local stack is not up: run make up first" >&2; exit 1; }
	. ./.local/env && $(PY) -m telemetry.report.page --out out/report.html --png out/report.png $(if $(DAYS),--days $(DAYS))

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

unit: venv system-deps
	$(PY) -m pytest -m "not integration" -q

$(TF_STANDIN)/.installed: scripts/terraform_standin/requirements.txt scripts/terraform_standin/schema_from_jsii.py
	rm -rf $(TF_VENV) $(TF_STANDIN)
	$(PYTHON) -m venv $(TF_VENV)
	$(TF_VENV)/bin/pip install --quiet -r scripts/terraform_standin/requirements.txt
	$(TF_VENV)/bin/pip check
	$(TF_VENV)/bin/pip download --quiet --no-deps -d $(TF_STANDIN)/wheels $(TF_SCHEMA_PACKAGES)
	$(TF_VENV)/bin/python scripts/terraform_standin/schema_from_jsii.py $(TF_STANDIN)/schemas $(TF_STANDIN)/wheels/*.whl
	rm -rf $(TF_STANDIN)/wheels
	touch $@

# fmt, validate and plan with the real terraform binary (the stand-ins where the registry
# is out of reach; skipped, saying so, without a binary), then checkov.
check-terraform: venv $(TF_STANDIN)/.installed
	$(PY) scripts/terraform_standin/check.py
	test -x $(CHECKOV_VENV)/bin/checkov || ($(PYTHON) -m venv $(CHECKOV_VENV) && \
	  $(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION))
	$(CHECKOV_VENV)/bin/checkov -d terraform --quiet --compact --framework terraform --skip-download

test: venv system-deps lint check-terraform
	$(STACK) run -- $(PY) -m pytest -q

bench: bench-ingest bench-pipeline bench-analytics

bench-ingest: venv system-deps
	$(STACK) run -- $(PY) scripts/bench_ingest.py

bench-pipeline: venv
	$(STACK) run -- $(PY) scripts/bench_pipeline.py

bench-analytics: venv
	LOG_LEVEL=WARNING $(STACK) run -- $(PY) scripts/bench_analytics.py

# Coverage-guided fuzzing of the body parser and everything an accepted ping goes
# through (scripts/fuzz_wire.py). atheris installs as a wheel: no compiler needed.
# Records executions and every distinct crash under .local/fuzz/; fails if it found one.
FUZZ_SECONDS ?= 600
fuzz: venv
	mkdir -p .local/fuzz
	$(PY) scripts/fuzz_wire.py --seconds $(FUZZ_SECONDS) --dir .local/fuzz 2>&1 | tee .local/fuzz/fuzz.log | grep -E "^(CRASH|Done|#[0-9]+ +(pulse|DONE))"
	@cat .local/fuzz/summary.json
	@if [ -s .local/fuzz/crashes.jsonl ]; then cat .local/fuzz/crashes.jsonl; echo "fuzz: crashes found (.local/fuzz/crashes/)" >&2; exit 1; fi

# The soak runs a stack of its own in .local/soak, wiped first (like the demo), so that its
# counts are exact; not part of `make test`. SOAK_SECONDS=60 for a quick run.
soak: venv
	$(STACK) down
	rm -rf .local/soak
	LOCAL_STACK_DIR=.local/soak LOG_LEVEL=WARNING $(STACK) run -- $(PY) scripts/soak.py

clean: down
	rm -rf $(VENV) .local .pytest_cache .ruff_cache terraform/.build *.egg-info out
