# Two set-up commands (README): `make demo` runs the product on embedded defaults,
# `make test` runs the whole suite. Both create .venv and install everything themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0
DEMO_DIR ?= var/demo
DEMO_USERS ?= 2000
DEMO_ITEMS ?= 1000
DEMO_INTERACTIONS ?= 30000
# the demo's training options: a JSON object of TrainConfig fields (trainer/config.py), checked
# by `margo train --config`; `margo config --retrain` turns the same file into the POST /retrain
# body the demo suggests (written to $(DEMO_DIR)/retrain.json), so no option is written twice
DEMO_CONFIG ?= configs/demo.json
# where the demo serves: `make demo PORT=8080` (HOST=0.0.0.0 to listen beyond this machine)
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_URL := http://$(HOST):$(PORT)

.PHONY: demo test lint install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: a CPU wheel; an open range would pull a multi-GB CUDA build
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(PY) -m ruff check .

test: install lint
	$(VENV)/bin/lint-imports  # the layer rules: pyproject.toml [tool.importlinter]
	$(PY) -m pytest

demo: install
	$(VENV)/bin/margo import synth $(DEMO_DIR)/data --users $(DEMO_USERS) --items $(DEMO_ITEMS) \
		--interactions $(DEMO_INTERACTIONS) --modalities image=512,text=384 --overwrite
	$(VENV)/bin/margo train --data $(DEMO_DIR)/data --config $(DEMO_CONFIG) \
		--out var/models/margo-demo --overwrite
	$(VENV)/bin/margo config --config $(DEMO_CONFIG) --retrain > $(DEMO_DIR)/retrain.json
	$(VENV)/bin/margo db upgrade
	@# reads are public in the demo; retraining needs an admin key: a new one per run
	@key=$$($(VENV)/bin/margo keys create --role admin --name make-demo) && \
	echo && \
	echo "Try, once the server below is up (reads need no key here, retraining needs this one):" && \
	echo "  export MARGO_KEY=$$key" && \
	echo '  curl -s "$(DEMO_URL)/users/0/recommendations?k=5&explain=true"' && \
	echo '  curl -s "$(DEMO_URL)/reliability?modality=image&order=asc&limit=5"' && \
	echo '  curl -s -X POST $(DEMO_URL)/retrain -H "X-API-Key: $$MARGO_KEY" \' && \
	echo '    -H "Content-Type: application/json" -d @$(DEMO_DIR)/retrain.json' && \
	echo '  curl -s $(DEMO_URL)/jobs   # the retrain'"'"'s progress' && \
	echo "Or open the dashboard at $(DEMO_URL)/ (the key above lets it retrain and activate)" && \
	echo "Other margo commands: source $(VENV)/bin/activate (or run $(VENV)/bin/margo)" && \
	echo
	MARGO_PUBLIC_READS=true MARGO_LOG_FORMAT=text $(VENV)/bin/margo serve --host $(HOST) --port $(PORT)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
