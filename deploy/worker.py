"""A service's background process: outbox relay and consumers, without the web app.

Used with a real MongoDB, where web and worker processes share the documents:
``python -m deploy.worker identity``. (With mongomock they run inside the web process instead.)
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
