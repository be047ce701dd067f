# Footprint: two commands for a newcomer, `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test services test-unit test-system test-portal portal-deps bench dlq-list dlq-replay reset clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

## make run: the embedded platform in one process (gateway on http://127.0.0.1:8080, memory:// bus, documents
## in an embedded store under ./var/documents and files under ./var/media, both kept across restarts)
run: $(STAMP)
	$(PY) -m deploy.embedded

## make test: everything (unit, in-process service tests, system tests with gunicorn + RabbitMQ, the portal in Chromium)
test: $(STAMP) portal-deps
	$(PY) -m pytest -q

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit tests/service

test-system: $(STAMP)
	$(PY) -m pytest -q tests/system

## make test-portal: the web portal driven by Playwright in Debian's Chromium (screenshots in tests/portal/artifacts)
test-portal: $(STAMP) portal-deps
	$(PY) -m pytest -q tests/portal

# The portal tests need playwright-core (npm) and Debian's Chromium, plus a CJK font so screenshots are legible.
PORTAL_NODE := tests/portal/node_modules/.package-lock.json
$(PORTAL_NODE): tests/portal/package.json tests/portal/package-lock.json
	cd tests/portal && npm ci --no-audit --no-fund
	touch $@

portal-deps: $(PORTAL_NODE)
	@if [ ! -x /usr/bin/chromium ] || ! fc-list :lang=zh-tw family | grep -q .; then \
		echo "installing Debian's chromium and fonts-wqy-microhei for the portal tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei; \
	fi

## make services: each service and the gateway as a gunicorn process plus a worker process, against RabbitMQ on
## localhost and one shared document store (a SecantusDB daemon under ./var/documents unless DOCUMENTS_URL is set)
services: $(STAMP)
	$(PY) -m deploy.services

bench: $(STAMP)
	$(PY) -m bench.login_latency
	$(PY) -m bench.bus_throughput
	$(PY) -m bench.import_students
	$(PY) -m bench.upload_throughput
	$(PY) -m bench.deadline_hour
	$(PY) -m bench.central_package

## make dlq-list / make dlq-replay QUEUE=gateway.access-revocation: inspect and replay dead letters (RabbitMQ)
dlq-list: $(STAMP)
	$(PY) -m deploy.dlq list

dlq-replay: $(STAMP)
	$(PY) -m deploy.dlq replay $(QUEUE)

## make reset: forget everything `make run` / `make services` kept (documents, files, keys, logs) and start clean
reset:
	rm -rf var

clean:
	rm -rf $(VENV) var .pytest_cache
