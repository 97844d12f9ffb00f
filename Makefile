# gdos: two commands for a newcomer, `make up` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
MESH    ?= tcp://127.0.0.1:7420
NODE    ?= $(shell hostname -s)
export GDOS_HOME ?= $(CURDIR)/.gdos

.PHONY: up down venv test lint bench completions clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

## up: install, start a daemon and one local agent under ./.gdos, enroll it, list nodes
up: venv
	@$(BIN)/gdos daemon status >/dev/null 2>&1 || $(BIN)/gdos daemon start --mesh $(MESH)
	@mkdir -p $(GDOS_HOME)/run $(GDOS_HOME)/log
	@if ! { [ -f $(GDOS_HOME)/run/agent.pid ] && kill -0 $$(cat $(GDOS_HOME)/run/agent.pid) 2>/dev/null; }; then \
		token=$$($(BIN)/gdos token create --ttl 10m --uses 1 --address $(MESH) 2>/dev/null) && \
		GDOS_JOIN_TOKEN="$$token" nohup $(BIN)/gdos agent run --name $(NODE) --backoff-max 2 \
			>>$(GDOS_HOME)/log/agent.log 2>&1 & echo $$! > $(GDOS_HOME)/run/agent.pid; fi
	@$(BIN)/python -m gdos.devtools.wait_online $(NODE) 20
	@$(BIN)/gdos node list

## down: stop the agent and the daemon that `make up` started
down:
	-@[ -f $(GDOS_HOME)/run/agent.pid ] && kill $$(cat $(GDOS_HOME)/run/agent.pid) 2>/dev/null; rm -f $(GDOS_HOME)/run/agent.pid
	-@$(BIN)/gdos daemon stop

## test: install and run the whole suite (what CI runs)
test: venv
	$(BIN)/pytest -q -n auto --dist loadfile

lint: venv
	$(BIN)/ruff check gdos agent tui tests bench
	$(BIN)/ruff format --check gdos agent tui tests bench
	@# mypy cannot follow package-dir (agent/ installs as gdos.agent, tui/ as gdos.tui):
	@# it checks a tree of links with the installed layout, or gdos.agent would be Any.
	rm -rf build/mypy && mkdir -p build/mypy/gdos
	ln -s $(CURDIR)/gdos/* build/mypy/gdos/
	ln -s $(CURDIR)/agent build/mypy/gdos/agent && ln -s $(CURDIR)/tui build/mypy/gdos/tui
	MYPYPATH=build/mypy $(BIN)/mypy -p gdos

bench: venv
	$(BIN)/python bench/run.py

completions: venv
	$(BIN)/python -m gdos.devtools.completions completions

clean: down
	rm -rf $(VENV) .gdos
