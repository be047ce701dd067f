# Footprint: two commands for a newcomer, `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test services test-unit test-system bench dlq-list dlq-replay reset clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

## make run: the embedded platform in one process (gateway on http://127.0.0.1:8080, memory:// bus, documents
## in an embedded store under ./var/documents and files under ./var/media, both kept across restarts)
run: $(STAMP)
	$(PY) -m deploy.embedded

## make test: everything (unit, in-process service tests, system tests with gunicorn + RabbitMQ)
test: $(STAMP)
	$(PY) -m pytest -q

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit tests/service

test-system: $(STAMP)
	$(PY) -m pytest -q tests/system

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
