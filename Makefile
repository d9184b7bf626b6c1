# The front door: `make demo` and `make test` each set themselves up on a fresh machine.
# Every install goes through constraints.txt: pyproject.toml gives ranges (torch>=2.6), the
# constraints file the exact releases we test (an unconstrained torch is a multi-GB CUDA build).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO := demo_out

.PHONY: install lint test demo bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all,test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/rxwgan demo -o $(DEMO)

bench: $(STAMP)
	$(PY) bench/run.py --output bench/results.json $(BENCH)

clean:
	rm -rf $(DEMO) .pytest_cache
