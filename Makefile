# Two commands do all setup on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: demo test test-long install models bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Pinned first so no later resolution can pull the multi-GB CUDA build on a CPU machine.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,ray]'
	rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

models: install
	$(PY) main.py models install

demo: models
	$(PY) main.py --video demo --out out/demo.mp4 --json out/demo.json

test: models
	$(PY) main.py models install --all  # the optional models' parity tests need them too
	bash tests/run_suite.sh $(PY) -m "not long"  # the soak runs: make test-long

test-long: models
	bash tests/run_suite.sh $(PY) -m long

bench: models
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) out bench/results
