# The two commands: `make demo` (main job) and `make test` (whole suite).
# Both create .venv if missing and install the pinned dependencies first.
# `make lab` opens the notebooks in JupyterLab; `make notebooks-html OUT=DIR` renders them.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LAB_STAMP := $(VENV)/.installed-lab
KERNEL ?= csc-workbench

.PHONY: demo test setup lab notebooks-html reference clean-results

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m workflows demo

# JupyterLab (the `lab` extra, pinned in constraints.txt) and the project's kernel, registered
# inside .venv as "$(KERNEL)" (the kernel every notebook names); then JupyterLab on notebooks/.
$(LAB_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,lab]'
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (csc-workbench)"
	@touch $(LAB_STAMP)

# LAB_ARGS: more JupyterLab options, e.g. LAB_ARGS="--no-browser --port 8890".
LAB_ARGS ?=
lab: $(LAB_STAMP)
	$(PY) -m jupyterlab $(LAB_ARGS) notebooks/

# Every notebook executed (short chains; FULL=1 for full-length ones) and written as HTML with
# its outputs into OUT (default results/notebooks), with an index.html.
OUT ?= results/notebooks
notebooks-html: $(STAMP)
	$(PY) -m workflows notebooks --out $(OUT) $(if $(FULL),--full,)

# Tests run on every core (pytest-xdist); a module's tests stay on one worker so its
# fitted fixtures are built once, and modules start slowest first (tests/conftest.py
# SLOW_MODULES_FIRST; xdist's reordering by test count is off).  TEST_WORKERS=0: one process.
# PYTEST_ARGS: more pytest options, e.g. PYTEST_ARGS=--durations=10 (the ten slowest items).
TEST_WORKERS ?= auto
PYTEST_ARGS ?=
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder $(PYTEST_ARGS)

reference: $(STAMP)
	$(PY) -m workflows build-reference

clean-results:
	rm -rf results
