"""Gunicorn settings for every Footprint HTTP process; tune by environment.

Threads (gthread) rather than many processes: requests wait on I/O (MongoDB, RabbitMQ, object storage,
upstream services) and a thread per in-flight upload keeps memory flat. WEB_CONCURRENCY adds processes on
the same port (they share the document store; relays and consumers live in deploy/worker.py processes).
"""
import os

bind = os.environ.get("BIND", "127.0.0.1:8080")
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "32"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "180"))
graceful_timeout = 20
keepalive = 30
control_socket_disable = True  # gunicorn 27 otherwise opens one shared control socket for every instance
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
proc_name = os.environ.get("FOOTPRINT_PROCESS", "footprint")


def worker_exit(server, worker):
    # Flush the worker's last spans (its tracer provider was made after the fork, in deploy.wsgi.boot).
    from shared.tracing import shutdown_tracing

    shutdown_tracing()
