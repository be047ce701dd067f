"""A service's background process: outbox relay and consumers, without the web app.

Wherever the document store is shared (MongoDB; the SecantusDB daemon in `make services` and the system
tests): ``python -m deploy.worker identity``. Several may run per service: they compete on its durable
queues and take turns at its outbox relay by lease. (The one-process embedded run keeps them inside.)
"""
from __future__ import annotations

import signal
import sys
import threading

from deploy.wsgi import boot
from shared.tracing import shutdown_tracing


def main(name: str) -> None:
    runtime = boot(name, start_workers=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    runtime.stop_workers()
    shutdown_tracing()  # the last spans leave before the process does


if __name__ == "__main__":
    main(sys.argv[1])
