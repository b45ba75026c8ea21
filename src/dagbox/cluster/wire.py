"""What the driver and a node say to each other: plain bytes of msgspec structs.

Only bytes and strings cross Ray (no pickled dagbox objects), so a node never
unpickles a class it does not have; a node of another dagbox version is refused by its
answer to ``NodeAgent.version`` (the same in every version) before anything else is said. Values of secret-named params never cross at all: an
order carries a keyed digest of each, and the node takes the value from its own
environment, checking it against the digest (docs/cluster.md, "Credentials").
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import msgspec

from dagbox.engine.events import AnyEvent

#: Bumped when a message changes shape; a node must speak the driver's.
PROTOCOL = 1


class Hello(msgspec.Struct, frozen=True):
    """What a node says of itself when its agent starts (once its version is known to match)."""

    host: str
    #: Its container engine's address, or "" when it has none set (the default socket).
    engine: str
    #: Image id per reference the bench's DAG names, as the node's engine has them.
    images: dict[str, str] = {}
    #: What its agent did on starting: containers and processes that dead runs left.
    notices: list[str] = []


class Order(msgspec.Struct, frozen=True):
    """One run for a node: which DAG (a path inside the bench's folder) with which params."""

    run_id: str
    dag: str
    params: dict[str, str]
    #: name -> keyed digest of the driver's value: the node supplies the value itself.
    secret_params: dict[str, str]
    salt: str
    #: Send the steps' output live (the terminal shows some of it), or only the rest.
    live_output: bool = True


class Outcome(msgspec.Struct, frozen=True):
    """How a run ended, the events the driver has not had yet, and its whole record."""

    run_id: str
    status: str
    interrupted: bool
    error: str | None
    record_error: str | None
    #: The record's folder on the node: paths inside its files start with it.
    record_dir: str
    #: The record folder as a tar stream (run.json, events.jsonl, logs, journals, children).
    record: bytes
    events: bytes = b""


_events = msgspec.msgpack.Encoder()
_batch = msgspec.msgpack.Decoder(list[tuple[str, bytes]])
_event_list = msgspec.msgpack.Decoder(list[AnyEvent])


def encode_batch(batch: list[tuple[str, list[AnyEvent]]]) -> bytes:
    """(run id, events) pairs -> bytes; each run's events are encoded once, together."""
    return _events.encode([(run_id, _events.encode(events)) for run_id, events in batch])


def decode_batch(data: bytes) -> list[tuple[str, list[AnyEvent]]]:
    return [(run_id, _event_list.decode(events)) for run_id, events in _batch.decode(data)]


def encode_events(events: list[AnyEvent]) -> bytes:
    return _events.encode(events)


def decode_events(data: bytes) -> list[AnyEvent]:
    return _event_list.decode(data) if data else []


def digest(salt: str, value: str) -> str:
    """A keyed digest of a secret: enough to tell that a node holds the same value."""
    return hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()


def resolve_secrets(order: Order, env: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """The order's params with its secret params filled in from ``env``, or why not."""
    params = dict(order.params)
    for name, wanted in order.secret_params.items():
        value = env.get(name)
        if value is None:
            return params, f"this node has no {name} in its environment"
        if not hmac.compare_digest(digest(order.salt, value), wanted):
            return params, f"this node's {name} is not the value the driver has"
        params[name] = value
    return params, None


def encode(message: msgspec.Struct) -> bytes:
    return msgspec.msgpack.encode(message)


def decode_hello(data: bytes) -> Hello:
    return msgspec.msgpack.decode(data, type=Hello)


def decode_order(data: bytes) -> Order:
    return msgspec.msgpack.decode(data, type=Order)


def decode_outcome(data: bytes) -> Outcome:
    return msgspec.msgpack.decode(data, type=Outcome)
