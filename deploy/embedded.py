"""The embedded platform: every service and the gateway in ONE process (``make run``).

Same code as the distributed run (each service is a real HTTP app the gateway proxies to); only the
backends differ: ``memory://`` bus, mongomock documents, files under ./var. Seeds a demo city and schools.
"""
from __future__ import annotations

import logging
import os
import threading

from werkzeug.serving import make_server

EMBEDDED_DEFAULTS = {"BUS_URL": "memory://", "DOCUMENTS_URL": "mongomock://", "MEDIA_URL": "file://./var/media",
                     "FOOTPRINT_VAR_DIR": "var", "IDENTITY_URL": "http://127.0.0.1:8101"}


class Platform:
    """Starts and stops the embedded platform; also used by tests and benchmarks."""

    def __init__(self, *, gateway_port: int = 8080, host: str = "127.0.0.1", env: dict | None = None, seed: bool = True):
        for key, value in EMBEDDED_DEFAULTS.items():
            os.environ.setdefault(key, value)
        os.environ.update(env or {})
        from gateway.app import create_runtime as gateway_runtime
        from services.identity.app import create_runtime as identity_runtime
        from services.identity.domain import seed_demo
        from shared.tracing import init_tracing

        init_tracing("footprint-embedded")
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the gateway logs requests with ids already
        self.identity = identity_runtime()
        self.demo = seed_demo(self.identity.state["identity"]) if seed else None
        identity_port = int(os.environ["IDENTITY_URL"].rsplit(":", 1)[1])
        self.servers = [make_server(host, identity_port, self.identity.create_app(), threaded=True)]
        self.gateway = gateway_runtime()
        self.gateway_app = self.gateway.create_app()
        self.servers.append(make_server(host, gateway_port, self.gateway_app, threaded=True))
        self.url = f"http://{host}:{self.servers[-1].server_port}"
        self.threads: list[threading.Thread] = []

    def start(self) -> "Platform":
        for runtime in (self.identity, self.gateway):
            runtime.start_workers()
        for server in self.servers:
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
        for runtime in (self.identity, self.gateway):
            runtime.stop_workers()


def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
