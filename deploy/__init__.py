"""How Footprint runs: gunicorn config and entry points, the embedded runner, the worker runner."""
