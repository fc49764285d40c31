# The two commands of the quick start: `make run` and `make test`.
# Both install everything they need: Debian packages (apt-get, as root) and a
# project virtualenv in .venv.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the project needs, and one command each provides (to skip apt when present)
SYSTEM_PACKAGES := graphviz espeak-ng kamailio sip-tester baresip tshark linphone-cli postgresql
SYSTEM_COMMANDS := dot espeak-ng kamailio sipp baresip dumpcap linphonec pg_ctlcluster
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test system venv lint typecheck unit bench bench-sip bench-packages schema clean

run: system venv
	$(BIN)/ivr check --portal examples/portal/portal.yaml dialplans/anywhere_portal.yaml
	$(BIN)/ivr check --portal examples/portal/kamailio.yaml dialplans/anywhere_portal.yaml
	$(BIN)/ivr simulate dialplans/anywhere_portal.yaml --portal examples/portal/portal.yaml \
		--caller "+49 171 1234567" --keys "4711# *11"
	examples/run_portal.sh

test: system venv lint typecheck unit

system:
	@missing=""; for c in $(SYSTEM_COMMANDS); do command -v $$c >/dev/null || missing=yes; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $(SYSTEM_PACKAGES)"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES); \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
# (the distribution was called `ivr` before: both installed would load the pytest plugin twice)
	$(BIN)/pip uninstall -q -y ivr 2>/dev/null || true
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q

bench: system venv bench-packages
	$(BIN)/python bench/sim_throughput.py
	$(BIN)/python bench/portal_throughput.py
	$(BIN)/python bench/prompt_audio.py
	$(BIN)/python bench/dtmf_detector.py
	$(BIN)/python bench/sip_load.py
	$(BIN)/python bench/bridge_load.py
	$(BIN)/python bench/sip_fuzz.py
	$(BIN)/python bench/workers_load.py
	$(BIN)/python bench/lockout_store.py

bench-sip: system venv
	$(BIN)/python bench/sip_load.py

# the bridge benchmark's anchor: rtpengine (userspace), run by the benchmark itself
bench-packages:
	@command -v rtpengine >/dev/null || { $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q rtpengine-daemon; }

schema: venv
	$(BIN)/ivr schema -o dialplan.schema.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
