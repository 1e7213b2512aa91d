# The cookbook's commands. Each sets up .venv on first use and re-installs
# only when requirements.txt or pyproject.toml has changed.
#   make serve    build the site, serve it on http://127.0.0.1:8000, rebuild on every edit
#   make test     every page's examples, the library's and site's tests, the browser tests, ruff, mypy and a strict build
#   make test BACKENDS="sqlite postgresql mariadb"   the same on each named database
#   make test JOBS=1    the same in one process (JOBS is pytest-xdist's -n; the default, auto, uses every core)
#   make test SQLALCHEMY=2.0   the pages, the library and the site's tests on SQLAlchemy 2.0 (in its
#                 own .venv-sqlalchemy-2.0; the default, 2.1, is what requirements.txt pins)
#   make bench    the figures the issues ask for (build, live preview, test, the matrix and browser
#                 suite's wall time, a profile, page weight, Run and recipe costs); ONLY=site (or
#                 preview, matrix, profile, pages, runner, unique, prefilter, expire_on_fk_change) for one
#   make html     the strict build alone, into _build/html
#   make screenshots   PNGs of a recipe page (light, dark, 375 px) in _build/screenshots; PAGE=group/page picks one
#   make inventories   refresh the pinned intersphinx inventories in docs/_inventories
#   make pyodide  fetch the Python the pages' Run uses in the browser (Pyodide from npm, SQLAlchemy's
#                 wheel from PyPI) into docs/_pyodide/dist; html, serve and test run it (a no-op when done)
#   make clean    remove build output (keeps .venv)

PYTHON ?= python3
SQLALCHEMY ?= 2.1
ifeq ($(SQLALCHEMY),2.1)
VENV := .venv
SERIES_PIN :=
else ifeq ($(SQLALCHEMY),2.0)
VENV := .venv-sqlalchemy-2.0
SERIES_PIN := requirements-sqlalchemy-2.0.txt
else
$(error SQLALCHEMY=$(SQLALCHEMY) is not a series the cookbook is verified on; valid values: 2.0, 2.1)
endif
PY := $(VENV)/bin/python
BACKENDS ?= sqlite
# pytest-xdist: one worker per core; a test file (a page, with its examples in order) stays on one worker.
JOBS ?= auto
PARALLEL := -n $(JOBS) --dist loadfile
# What `make test SQLALCHEMY=2.0` leaves to the 2.1 run: the tests that build the whole site.
BUILT_WITH_2_1 := --ignore=tests/browser --ignore=tests/site/test_meta.py --ignore=tests/site/test_errors.py --ignore=tests/site/test_incremental.py
HOST ?= 127.0.0.1
PORT ?= 8000
SPHINX_ARGS := -c . docs
STRICT := -W -n --keep-going -q

.PHONY: serve html test bench inventories clean screenshots pyodide

serve: $(VENV)/.installed pyodide
	$(PY) -m cookbook_site.preview $(SPHINX_ARGS) _build/html -n --host $(HOST) --port $(PORT) --watch src --watch docs/_ext --watch conf.py

html: $(VENV)/.installed pyodide
	$(PY) -m sphinx $(STRICT) -b html $(SPHINX_ARGS) _build/html

test: $(VENV)/.installed pyodide
ifeq ($(SQLALCHEMY),2.0)
	@# The site is built and tried in the browser with 2.1 only; the examples, the library, the
	@# downloaded scripts and the site's other tests run here.
	COOKBOOK_BACKENDS="$(BACKENDS)" $(PY) -m pytest $(PARALLEL) docs src tests $(BUILT_WITH_2_1)
else
	COOKBOOK_BACKENDS="$(BACKENDS)" $(PY) -m pytest $(PARALLEL)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m sphinx $(STRICT) -E -b html $(SPHINX_ARGS) _build/html
	@cat _build/backends.txt
endif

bench: $(VENV)/.installed pyodide
	ONLY=$(ONLY) $(PY) -m tests.bench

screenshots: $(VENV)/.installed pyodide
	$(PY) -m tests.browser.screenshots $(PAGE)

pyodide: $(VENV)/.installed
	$(PY) -m cookbook_site.pyodide_assets

inventories: $(VENV)/.installed
	$(PY) docs/_inventories/refresh.py

clean:
	rm -rf _build .pytest_cache .mypy_cache

$(VENV)/.installed: requirements.txt $(SERIES_PIN) pyproject.toml docs/_ext/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "make: $(PYTHON) is older than Python 3.11; run with PYTHON=python3.11 (or newer)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "make: '$(PYTHON) -m venv' failed; on Debian/Ubuntu install it with: sudo apt install python3-venv"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
ifeq ($(SERIES_PIN),)
	$(PY) -m pip install --quiet -r requirements.txt -e .
else
	grep -v -E '^SQLAlchemy(\[[a-z]+\])?==' requirements.txt > $(VENV)/requirements.txt
	$(PY) -m pip install --quiet -r $(VENV)/requirements.txt -r $(SERIES_PIN) -e .
endif
	@touch $@
