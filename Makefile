# The whole set-up: each target installs what it needs into .venv on first use.
#   make serve     the REST service: torch + the `serve` and `onnx` extras only
#   make test      ruff + mypy + every test: the `dev` extra (TensorFlow, Ray, ...), system packages
#   make test-fast the tests not marked slow or tensorflow, none on PostgreSQL (same install)
#   make docs      the user docs (docs/, mkdocs-material) into site/, offline
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of torch is what this project's machines carry; elsewhere pick yours, e.g.
# `make test TORCH_SPEC="torch>=2.3"`. It is installed before the package, so pip keeps it.
TORCH_SPEC ?= torch==2.13.0
INPUT ?= /usr/share/sounds/alsa/Front_Center.wav
OUTPUT ?= embeddings.npz
WEIGHTS ?=
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-serve system-deps serve test test-fast test-container lint typecheck docs pytest embed bench bench-peers clean

# One stamp per install: the venv with torch, then what serving needs, then everything.
$(VENV)/.installed-torch:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed-serve: pyproject.toml $(VENV)/.installed-torch
	$(PY) -m pip install -q -e ".[serve,onnx]"
	touch $@

# The HEAR validator (tests/test_hear.py runs its `hear-validator`) is installed apart from the
# `dev` extra: its last release says Python < 3.9 (an installer's caution; its code runs on 3.10+)
# and requires the `tensorflow` distribution, which would put a second, full TensorFlow over the
# dev extra's tensorflow-cpu. What it imports (torch, numpy, tensorflow) the dev extra has.
HEARVALIDATOR_SPEC ?= hearvalidator==2021.0.6

# `dev` includes `serve` and `onnx`, so a dev install is a serve install too.
$(VENV)/.installed-dev: pyproject.toml Makefile $(VENV)/.installed-torch
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps --ignore-requires-python "$(HEARVALIDATOR_SPEC)"
	touch $@ $(VENV)/.installed-serve $(VENV)/.installed-docs

install-serve: $(VENV)/.installed-serve

$(VENV)/.installed-docs: pyproject.toml $(VENV)/.installed-torch
	$(PY) -m pip install -q -e ".[docs]"
	touch $@

# The user docs (mkdocs.yml, docs/) into the git-ignored site/: offline (open site/index.html),
# every warning an error.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site
	@if grep -rlE '<(script|link|img)[^>]* (src|href)="(https?:)?//' site --include='*.html'; then \
	  echo "make docs: these pages load files from another host; the site must work offline" >&2; exit 1; fi

install: $(VENV)/.installed-dev system-deps

# ffmpeg (m4a/video decoding), sox (test fixtures) and Debian's real recordings used by the tests.
system-deps:
	@bash scripts/system-deps.sh

lint: install
	$(PY) -m ruff check vggish app tests benchmarks

typecheck: install
	$(PY) -m mypy

# Every test, in two processes (pytest-xdist; a file's tests stay in one process, as some build on
# the ones before). tests/conftest.py starts the longest files first and puts the browser tests
# last, so that Playwright's event loop never meets the asyncio tests in a process.
# Each process computes on its own share of the CPUs (tests/conftest.py pins it). PYTEST_WORKERS=1:
# one process.
PYTEST_WORKERS ?= 2
pytest: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: lint typecheck docs pytest

# The quick loop while editing: no slow tests, no TensorFlow, no PostgreSQL server (tests/conftest.py
# marks those slow), in two processes, a file to a process, the files with the most tests first.
test-fast: install
	$(PY) -m pytest -m "not slow and not tensorflow" -n $(PYTEST_WORKERS) --dist loadfile

# The Docker image, built with podman on a Debian 12 base made by mmdebstrap and run as its user
# (root, Debian 12; several minutes): scripts/container-test.sh, docs/container.md.
test-container:
	bash scripts/container-test.sh

# The REST service on http://$(HOST):$(PORT) (docs at /docs); WEIGHTS=random for a demo.
serve: install-serve
	$(VENV)/bin/vggish serve --host "$(HOST)" --port "$(PORT)" $(if $(WEIGHTS),--weights "$(WEIGHTS)")

# One file from the command line; the default OUTPUT (in the repository root) is git-ignored.
embed: install-serve
	$(VENV)/bin/vggish embed "$(INPUT)" --output "$(OUTPUT)" $(if $(WEIGHTS),--weights "$(WEIGHTS)")

# Every benchmark in one run (many minutes; progress on stderr), written to the docs' benchmark page.
bench: install bench-peers
	$(PY) -m pip install -q -e ".[bench,onnx]"
	$(PY) benchmarks/run_all.py --page docs/benchmarks.md

# The peers the benchmark page compares with that cannot share .venv: frechet-audio-distance
# (the `fad` section) declares the packages of its other models (laion_clap, encodec, ...), so it
# and torchvggish are installed without dependencies into their own venv, which sees .venv's
# torch, numpy, scipy, soundfile, resampy and tqdm through a .pth file. Without it the `fad`
# section runs this project's modes only and its rows say so.
PEERS ?= .venv-peers
PEERS_SPEC ?= frechet-audio-distance==0.3.4 torchvggish==0.2
$(PEERS)/.installed: Makefile $(VENV)/.installed-dev
	$(PY) -m venv --without-pip $(PEERS)
	$(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))' \
	  > "$$($(PEERS)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/vggish-venv.pth"
	$(PY) -m pip --python $(PEERS)/bin/python install -q --no-deps $(PEERS_SPEC)
	touch $@

bench-peers: $(PEERS)/.installed

clean:
	rm -rf $(VENV) $(PEERS) .pytest_cache .mypy_cache .ruff_cache .hypothesis
