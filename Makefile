# Two commands for a new user:  `make demo` (set up + run the demo UI and API)  and  `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fusionrec-installed
SHARED ?= ../shared/data

.PHONY: setup demo test test-fast browser bench bench-lastfm bench-probe bench-llm bench-chat bench-load bench-turn lint clean

setup: $(STAMP)

# torch first, from the CPU build (plain `torch` would pull a multi-GB CUDA build), then the project.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(BIN)/fusionrec index
	$(BIN)/python app.py

# Debian's chromium for the browser test (`playwright install` cannot download browsers here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed: the browser test will be skipped (sudo apt-get install chromium)"; fi; }

test: setup browser
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

bench: bench-lastfm bench-probe bench-llm bench-chat bench-load

# One Last.fm run: every baseline, the fusion, its leave-one-source-out ablation, and fusion+LLM (the local model on 100 test users).
bench-lastfm: setup
	$(BIN)/fusionrec eval --data $(SHARED)/lastfm-hetrec2011 --ablation --llm local --llm-users 100 --json docs/benchmarks/eval-lastfm.json --out docs/benchmarks/lastfm

# Validation only: would user-kNN, RP3beta, EASE or the user's own tags improve the fusion? Reuses bench-lastfm's tuned sources.
bench-probe: setup
	$(BIN)/fusionrec probe-sources --data $(SHARED)/lastfm-hetrec2011 --sources-from docs/benchmarks/eval-lastfm.json --json docs/benchmarks/probe-lastfm.json --out docs/benchmarks/lastfm

bench-llm: setup
	$(BIN)/fusionrec eval --data demo --ablation --llm local --json docs/benchmarks/eval-demo.json --out docs/benchmarks/demo

bench-chat: setup
	$(BIN)/python -m evals.chat_bench --conversations 50 --json docs/benchmarks/chat-bench.json

bench-load: setup
	$(BIN)/python -m evals.load_bench --json docs/benchmarks/load-bench.json

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf .fusionrec artifacts

# Simulated listeners on Last.fm: the app (LLM off, over its OpenAI API) vs. tag-filter references. The first
# run builds the app's index on the train split (tens of minutes); pass HOME_DIR=<folder> to reuse one.
.PHONY: bench-conversation
bench-conversation: setup
	$(BIN)/python -m evals.conversation_sim --data $(SHARED)/lastfm-hetrec2011 --users 300 --seed 7 --json docs/benchmarks/conversation-lastfm.json --out docs/benchmarks/lastfm $(if $(HOME_DIR),--home $(HOME_DIR))

# In-process turn latency (LLM off) against `recommend` alone, demo and Last.fm (the Last.fm index is built in
# HOME_DIR on the first run; pass one to reuse it), and the entity linker over 2k/20k/100k synthetic items.
.PHONY: bench-turn
bench-turn: setup
	$(BIN)/python -m evals.bench_turn --json docs/benchmarks/bench-turn-demo.json $(if $(HOME_DIR),--home $(HOME_DIR))
	$(BIN)/python -m evals.bench_turn --data $(SHARED)/lastfm-hetrec2011 --json docs/benchmarks/bench-turn-lastfm.json $(if $(HOME_DIR),--home $(HOME_DIR))
	$(BIN)/python -m evals.bench_linker --json docs/benchmarks/bench-linker.json

# Live events against the real app (LLM off, a private demo home): POST /v1/events ingest throughput (batches
# of 100, 20 clients) next to /healthz, and freshness (event 200 -> a recommendation without the item).
.PHONY: bench-events
bench-events: setup
	$(BIN)/python -m evals.bench_events --json docs/benchmarks/events-demo.json
	$(BIN)/python -m evals.bench_items

# Issue 17's quality check: a time split's live chunk replayed through stores.live vs a full rebuild vs stale.
.PHONY: bench-live-replay
bench-live-replay: setup
	$(BIN)/python -m evals.live_replay --data demo
	$(BIN)/python -m evals.live_replay --data $(SHARED)/lastfm-hetrec2011 --users 500 --folds 1
