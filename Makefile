# The two commands: `make demo` (main job) and `make test` (whole suite).
# Both create .venv if missing and install the pinned dependencies first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test setup reference clean-results

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m workflows demo

# Tests run on every core (pytest-xdist); a module's tests stay on one worker so its
# fitted fixtures are built once.  TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope

reference: $(STAMP)
	$(PY) -m workflows build-reference

clean-results:
	rm -rf results
