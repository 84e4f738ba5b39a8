# The two set-up commands (README): `make run` starts the app, `make test` runs the suite.
# Both create .venv with pip when it is missing and reinstall only when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.gendet-installed
PORT   ?= 8501
PYTEST_ARGS ?=

.PHONY: install run test demo-models clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --progress-bar off -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/streamlit run ui --server.headless true --server.address 127.0.0.1 \
		--server.port $(PORT) --browser.gatherUsageStats false

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Rebuild models/demo/ from nothing (resumable): make demo-models PROFILE=gpu DEVICE=0
PROFILE ?= cpu
demo-models: $(STAMP)
	$(PY) -m models.build_demo --profile $(PROFILE) $(if $(DEVICE),--device $(DEVICE))

clean:
	rm -rf .cache .pytest_cache runs
