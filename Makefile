# ca_portal: `make run` starts the portal, `make test` runs the whole suite. Both set up first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/ca_portal
REQ_HASH := $(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)

.PHONY: setup run test test-embedded test-postgres check lint bench bench-backup clean

setup: $(STAMP)
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py collectstatic --noinput -v0

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

run: setup
	$(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

# The whole suite on the embedded default (SQLite + filesystem broker; the integration tests
# also start real workers on Redis + PostgreSQL), then the database tests again on PostgreSQL.
# In parallel (pytest-xdist): TEST_JOBS processes, more than the cores because the integration and
# browser tests mostly wait on the servers and workers they start; each browser module stays in
# one process (--dist loadgroup), which starts its deployment once. The slowest 15 tests are listed
# at the end. CA_PORTAL_SLOW_TESTS=1 runs the long cases too (the 100,000-entry CRLs).
TEST_JOBS ?= 4
PYTEST := $(BIN)/pytest -q -n $(TEST_JOBS) --dist loadgroup --durations=15

test: setup test-embedded test-postgres

# Bytecode caches are written even where the environment says not to (PYTHONDONTWRITEBYTECODE):
# each test process would otherwise redo pytest's assertion rewriting of every test module, and
# each of the many servers and workers the tests start would recompile the project.
test-embedded test-postgres: export PYTHONDONTWRITEBYTECODE =

test-embedded:
	CA_PORTAL_SLOW_TESTS=1 $(PYTEST)

# The database tests again on PostgreSQL. tests/ops/test_db_roles.py then does the portal's real
# work as the runtime role of the two-role set-up, on a database of its own (pytest-django's test
# database needs CREATEDB, DDL and TRUNCATE, which that role must not have); it ran in test-embedded.
test-postgres:
	DATABASE_URL=$(PG_TEST_URL) $(PYTEST) -m "not integration and not browser" \
		tests/authority tests/enrollment tests/api tests/bundles tests/audit tests/ops tests/ops_health \
		tests/test_authz_matrix.py tests/test_csrf.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/python manage.py makemigrations --check --dry-run

check: lint test

bench: setup
	$(BIN)/python bench/issuance.py

bench-backup: setup
	$(BIN)/python bench/backup.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
