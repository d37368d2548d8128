# The whole set-up: `make serve`-style targets install what they need on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of torch is what this project's machines carry; elsewhere pick yours, e.g.
# `make test TORCH_SPEC="torch>=2.3"`.
TORCH_SPEC ?= torch==2.13.0
INPUT ?= /usr/share/sounds/alsa/Front_Center.wav
OUTPUT ?= embeddings.npz
WEIGHTS ?=
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install system-deps serve test lint typecheck pytest embed bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed system-deps

# ffmpeg (m4a/video decoding), sox (test fixtures) and Debian's real recordings used by the tests.
system-deps:
	@bash scripts/system-deps.sh

lint: install
	$(PY) -m ruff check vggish app tests benchmarks

typecheck: install
	$(PY) -m mypy

pytest: install
	$(PY) -m pytest

test: lint typecheck pytest

# The REST service on http://$(HOST):$(PORT) (docs at /docs); WEIGHTS=random for a demo.
serve: install
	$(VENV)/bin/vggish serve --host "$(HOST)" --port "$(PORT)" $(if $(WEIGHTS),--weights "$(WEIGHTS)")

embed: install
	$(VENV)/bin/vggish embed "$(INPUT)" --output "$(OUTPUT)" $(if $(WEIGHTS),--weights "$(WEIGHTS)")

# Every benchmark in one run (several minutes; progress on stderr): one markdown table for the README.
bench: install
	$(PY) -m pip install -q -e ".[bench,onnx]"
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
