# Two commands for a fresh machine:
#   make run   - create .venv, install, serve the app at http://127.0.0.1:7860
#   make test  - same venv plus test dependencies, run the tests offline
#   make test-fast - the same without the tests marked slow (training, launched app, browser)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run test test-fast clean-venv

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -r requirements.txt
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed requirements-test.txt requirements-scale.txt
	$(PIP) install -r requirements-test.txt -r requirements-scale.txt
	touch $@

run: $(VENV)/.installed
	$(PY) app.py

test: $(VENV)/.test-installed
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder

test-fast: $(VENV)/.test-installed
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m "not slow"

clean-venv:
	rm -rf $(VENV)
