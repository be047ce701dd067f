"""Footprint's common kit: the only code that services and the gateway share.

config, errors, events catalogue, bus + outbox, documents, auth, tracing, the HTTP app kit and storage.
No module here imports a service.
"""
