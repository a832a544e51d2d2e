# contractrl — developer entry points. Every target installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_WORKERS ?= auto

.PHONY: install test test-all demo bench lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q -m "not slow" -n $(PYTEST_WORKERS)

test-all: install
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS)

demo: install
	@echo "== The paper's Figure 1 game: exact subgame-perfect contracts"
	$(BIN)/contractrl example figure1 --solve
	@echo
	@echo "== A random depth-10 binary Tree MDP (1023 states)"
	$(BIN)/contractrl tree --depth 10 --seed 0 --solve --max-rows 12
	@echo
	@echo "== Learning contracts with deep Q-networks (Algorithm 2), smoke preset, then its plot"
	rm -rf runs/demo-tree
	$(BIN)/contractrl train tree --preset smoke --out runs/demo-tree
	$(BIN)/contractrl plot runs/demo-tree
	@echo
	@echo "== A team in the Coin Game (Algorithm 3): training, validation, baselines, smoke preset"
	rm -rf runs/demo-coin
	$(BIN)/contractrl train coin --preset smoke --out runs/demo-coin
	$(BIN)/contractrl plot runs/demo-coin
	@echo
	@echo "== Your own environment (docs/your-environment.md): a 3-agent public-goods game, smoke preset"
	rm -rf runs/demo-marl
	$(BIN)/contractrl train marl --env examples/public_goods.py:make --env-kwargs '{"num_agents": 3}' \
		--preset smoke --out runs/demo-marl
	$(BIN)/contractrl plot runs/demo-marl

bench: install
	$(BIN)/python benchmarks/bench_exact.py
	$(BIN)/python benchmarks/bench_tree_learner.py
	$(BIN)/python benchmarks/bench_coin.py
	$(BIN)/python benchmarks/bench_host.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist src/*.egg-info
