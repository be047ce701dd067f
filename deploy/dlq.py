"""Operators' dead-letter tool, on plain pika (independent of the kit that put the messages there).

  python -m deploy.dlq list [QUEUE ...]        what sits in each <QUEUE>.dlq (type, id, error), without consuming
  python -m deploy.dlq replay QUEUE [--limit N] move dead letters back onto QUEUE (retry count reset)

``make dlq-list`` and ``make dlq-replay QUEUE=…`` wrap these. BUS_URL names the broker.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os

import pika

from shared.bus import ERROR_HEADER, RETRIES_HEADER


def pika_parameters(url: str) -> pika.URLParameters:
    """kombu writes the default vhost as ``//``; pika wants ``/%2F``."""
    if url.endswith("//"):
        url = url[:-2] + "/%2F"
    return pika.URLParameters(url)


def _channel(url: str):
    connection = pika.BlockingConnection(pika_parameters(url))
    return connection, connection.channel()


def known_queues() -> list[str]:
    from deploy.wsgi import SERVICES

    queues = []
    for module in SERVICES.values():
        spec = importlib.import_module(module).SPEC
        queues += [sub.queue for sub in spec.subscriptions(None)]
    return queues


def inspect(url: str, queue: str, limit: int = 100) -> list[dict]:
    """Read up to ``limit`` dead letters without removing them (they are requeued when the channel closes)."""
    connection, channel = _channel(url)
    found = []
    try:
        for _ in range(limit):
            method, properties, body = channel.basic_get(f"{queue}.dlq", auto_ack=False)
            if method is None:
                break
            headers = properties.headers or {}
            try:
                event = json.loads(body)
            except ValueError:
                event = {}
            found.append({"id": event.get("id"), "type": event.get("type"), "school": event.get("school"),
                          "error": headers.get(ERROR_HEADER), "retries": headers.get(RETRIES_HEADER, 0)})
    finally:
        connection.close()  # unacked messages go back to the dead-letter queue
    return found


def replay(url: str, queue: str, limit: int | None = None) -> int:
    """Move dead letters back to ``queue``; each is acked on the DLQ only after the broker confirmed the move."""
    connection, channel = _channel(url)
    channel.confirm_delivery()
    moved = 0
    try:
        while limit is None or moved < limit:
            method, properties, body = channel.basic_get(f"{queue}.dlq", auto_ack=False)
            if method is None:
                break
            headers = {k: v for k, v in (properties.headers or {}).items() if k not in (RETRIES_HEADER, ERROR_HEADER)}
            headers["x-footprint-replayed"] = int(headers.get("x-footprint-replayed", 0)) + 1
            channel.basic_publish("", queue, body, pika.BasicProperties(
                content_type=properties.content_type, content_encoding=properties.content_encoding, delivery_mode=2,
                headers=headers, message_id=properties.message_id), mandatory=True)
            channel.basic_ack(method.delivery_tag)
            moved += 1
    finally:
        connection.close()
    return moved


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.dlq", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list")
    listing.add_argument("queues", nargs="*")
    again = sub.add_parser("replay")
    again.add_argument("queue")
    again.add_argument("--limit", type=int)
    args = parser.parse_args()
    url = os.environ.get("BUS_URL", "amqp://guest:guest@127.0.0.1:5672//")
    if args.command == "list":
        for queue in args.queues or known_queues():
            try:
                letters = inspect(url, queue)
            except pika.exceptions.ChannelClosedByBroker:
                print(f"{queue}.dlq: (not declared yet)")
                continue
            print(f"{queue}.dlq: {len(letters)} dead letter(s)")
            for letter in letters:
                print(f"  {letter['type']} {letter['id']} school={letter['school']} retries={letter['retries']}: {letter['error']}")
    else:
        print(f"replayed {replay(url, args.queue, args.limit)} message(s) onto {args.queue}")


if __name__ == "__main__":
    main()
