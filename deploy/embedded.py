"""The embedded platform: every service and the gateway in ONE process (``make run``).

Same code as the distributed run (each service is a real HTTP app the gateway proxies to); only the
backends differ: ``memory://`` bus, mongomock documents, files under ./var. Seeds a demo city and schools.
"""
from __future__ import annotations

import importlib
import logging
import os
import threading

from werkzeug.serving import make_server

from deploy.wsgi import SERVICES
from shared.config import DEFAULT_PORTS

EMBEDDED_DEFAULTS = {"BUS_URL": "memory://", "DOCUMENTS_URL": "mongomock://", "MEDIA_URL": "file://./var/media",
                     "FOOTPRINT_VAR_DIR": "var"}


class Platform:
    """Starts and stops the embedded platform; also used by tests and benchmarks."""

    def __init__(self, *, gateway_port: int = 8080, host: str = "127.0.0.1", env: dict | None = None, seed: bool = True):
        for key, value in EMBEDDED_DEFAULTS.items():
            os.environ.setdefault(key, value)
        for name in SERVICES:
            os.environ.setdefault(f"{name.upper()}_URL", f"http://127.0.0.1:{DEFAULT_PORTS[name]}")
        os.environ.update(env or {})
        from shared.tracing import init_tracing

        init_tracing("footprint-embedded")
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the gateway logs requests with ids already
        self.seed = seed
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


def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    platform = Platform(gateway_port=int(os.environ.get("PORT", "8080"))).start()
    demo = platform.demo
    print(f"""
Footprint 學習歷程檔案平台 — embedded run (one process; memory:// bus, mongomock, files under ./var)
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
        platform.stop()


if __name__ == "__main__":
    main()
