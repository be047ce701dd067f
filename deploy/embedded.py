"""The embedded platform: every service and the gateway in ONE process (``make run``).

Same code as the distributed run (each service is a real HTTP app the gateway proxies to); only the
backends differ: ``memory://`` bus, an embedded document store (SecantusDB on threads of this process, data
under ./var/documents) and files under ./var/media, and the central database sandbox on a thread (receipts under
./var/central) unless CENTRAL_URL names another. Everything is kept across restarts; the demo city and
schools are seeded only into an empty store (``make reset`` empties it).
"""
from __future__ import annotations

import importlib
import logging
import os
import signal
import threading
from pathlib import Path

from werkzeug.serving import make_server

from deploy.wsgi import SERVICES
from shared.config import DEFAULT_PORTS

EMBEDDED_DEFAULTS = {"BUS_URL": "memory://", "MEDIA_URL": "file://./var/media", "FOOTPRINT_VAR_DIR": "var"}


class Platform:
    """Starts and stops the embedded platform; also used by tests and benchmarks."""

    def __init__(self, *, gateway_port: int = 8080, host: str = "127.0.0.1", env: dict | None = None,
                 seed: bool | None = None):
        for key, value in EMBEDDED_DEFAULTS.items():
            os.environ.setdefault(key, value)
        for name in SERVICES:
            os.environ.setdefault(f"{name.upper()}_URL", f"http://127.0.0.1:{DEFAULT_PORTS[name]}")
        os.environ.update(env or {})
        # No DOCUMENTS_URL given: the embedded store under the var directory, started before any service.
        self.docstore = None
        if not os.environ.get("DOCUMENTS_URL"):
            from deploy.docstore import EmbeddedDocumentStore

            self.docstore = EmbeddedDocumentStore(Path(os.environ["FOOTPRINT_VAR_DIR"]) / "documents").start()
            os.environ["DOCUMENTS_URL"] = self.docstore.url
        # The central database: the sandbox on a thread of this process (CENTRAL_SANDBOX_PORT, else any free port:
        # only the exchange in this process talks to it), unless CENTRAL_URL names one.
        self.central = None
        if not os.environ.get("CENTRAL_URL"):
            from deploy.central_sandbox import SandboxThread

            self.central = SandboxThread(int(os.environ.get("CENTRAL_SANDBOX_PORT") or 0),
                                         Path(os.environ["FOOTPRINT_VAR_DIR"]) / "central").start()
            os.environ["CENTRAL_URL"] = self.central.url
        # The demo is seeded only into an empty store, so a restart never undoes what was changed meanwhile.
        self.seed = store_is_empty() if seed is None else seed
        from shared.tracing import init_tracing

        init_tracing("footprint-embedded")
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the gateway logs requests with ids already
        self.runtimes = {}
        self.apps = {}
        self.servers = []
        for name, module in SERVICES.items():
            runtime = importlib.import_module(module).create_runtime()
            app = runtime.create_app()
            port = gateway_port if name == "gateway" else int(os.environ[f"{name.upper()}_URL"].rsplit(":", 1)[1])
            self.runtimes[name], self.apps[name] = runtime, app
            self.servers.append(make_server(host, port, app, threaded=True))
        self.identity, self.gateway, self.gateway_app = self.runtimes["identity"], self.runtimes["gateway"], self.apps["gateway"]
        self.url = f"http://{host}:{self.servers[-1].server_port}"
        self.threads: list[threading.Thread] = []
        self.demo = None

    def start(self) -> "Platform":
        for runtime in self.runtimes.values():
            runtime.start_workers()
        for server in self.servers:
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            self.threads.append(thread)
        if self.seed:
            for runtime in self.runtimes.values():
                if runtime.spec.seed_demo:
                    result = runtime.spec.seed_demo(runtime)
                    self.demo = self.demo or result
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        for runtime in self.runtimes.values():
            runtime.stop_workers()
        if self.central:
            self.central.stop()
            os.environ.pop("CENTRAL_URL", None)
        if self.docstore:
            import mongoengine

            mongoengine.disconnect_all()
            self.docstore.stop()
            os.environ.pop("DOCUMENTS_URL", None)


def store_is_empty() -> bool:
    """No database of this deployment exists yet (the services create theirs, with indexes, as they start)."""
    import pymongo

    prefix = os.environ.get("DOCUMENTS_DB_PREFIX", "footprint") + "_"
    with pymongo.MongoClient(os.environ["DOCUMENTS_URL"], serverSelectionTimeoutMS=5000) as client:
        return not any(name.startswith(prefix) for name in client.list_database_names())


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as Ctrl-C does: the store closes cleanly
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    platform = Platform(gateway_port=int(os.environ.get("PORT", "8080"))).start()
    from services.identity.domain import DEMO_PASSWORD

    demo = platform.demo or {"school": "999001", "users": ["admin", "teacher01", "student01"], "password": DEMO_PASSWORD}
    kept = "" if platform.demo else "\n  Documents kept from the previous run (the demo was seeded then; changed passwords stay changed)."
    print(f"""
Footprint 學習歷程檔案平台 — embedded run (one process; memory:// bus, documents and files under ./var,
kept across restarts; `make reset` starts clean){kept}
  Gateway:  {platform.url}   (API document: {platform.url}/api/v1/openapi.json)
  Demo school {demo['school']} accounts (password '{demo['password']}', embedded run only): {', '.join(demo['users'])}
  City admin: tenant 'TPE', username 'cityadmin', same password. Second demo school 999002 has the same accounts.
  Try:
    curl -s {platform.url}/api/v1/auth/login -H 'Content-Type: application/json' \\
      -d '{{"school":"999001","username":"student01","password":"{demo['password']}"}}'
    curl -s {platform.url}/api/v1/me -H "Authorization: Bearer <access_token>"
Ctrl-C stops it.
""", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        platform.stop()


if __name__ == "__main__":
    main()
