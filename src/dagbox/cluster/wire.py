"""What the driver and a node say to each other: plain bytes of msgspec structs.

Only bytes and strings cross Ray (no pickled dagbox objects), so a node never
unpickles a class it does not have; a node of another dagbox version is refused by its
answer to ``NodeAgent.version`` (the same in every version) before anything else is
said. Values of secret-named params never cross at all: the setup carries a slow salted
hash of each, a node whose own value does not match is not used, and orders name secret
params without their values (docs/cluster.md, "Credentials").
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import msgspec

from dagbox.engine.events import AnyEvent

#: Bumped when a message changes shape; a node must speak the driver's.
PROTOCOL = 1


class Setup(msgspec.Struct, frozen=True):
    """What an agent is told once, before its first run."""

    slots: int
    max_containers: int | None
    #: The DAG runs containers: connect to the node's engine before the first run.
    containers: bool
    #: Images the DAG names (templates left out): their ids on this node go in the keys.
    images: list[str]
    #: The DAG file, relative to the bench's folder (the agent's working dir).
    dag: str
    #: name -> slow salted hash (:func:`digest`) of the driver's value of each secret param.
    secrets: dict[str, str]
    salt: str


class Hello(msgspec.Struct, frozen=True):
    """What a node says of itself when its agent starts (once its version is known to match)."""

    host: str
    #: Image id per reference the bench's DAG names, as the node's engine has them.
    images: dict[str, str] = {}
    #: What its agent did on starting: containers and processes that dead runs left.
    notices: list[str] = []
    #: Why this node cannot serve the bench (a secret it lacks, the DAG it cannot load).
    problem: str | None = None


class Order(msgspec.Struct, frozen=True):
    """One run for a node: which params; secret params by name only (the node has them)."""

    run_id: str
    params: dict[str, str]
    secret_params: list[str]
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
    #: The node could not run it at all (``infra_node``); it never started.
    refused: bool = False


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
    """A slow salted hash of a secret (scrypt, about 50 ms): enough for a node to tell that
    it holds the driver's value, and slow to guess a value from (salt and hash both travel
    through Ray, where anyone on the cluster's network can read them)."""
    hashed = hashlib.scrypt(value.encode(), salt=salt.encode(), n=2**14, r=8, p=1, dklen=32)
    return hashed.hex()


def missing_secrets(setup: Setup, env: Mapping[str, str]) -> str | None:
    """Why this node cannot give the bench's secret params their driver's values, or None."""
    for name, wanted in setup.secrets.items():
        value = env.get(name)
        if value is None:
            return f"it has no {name} in its environment"
        if not hmac.compare_digest(digest(setup.salt, value), wanted):
            return f"its {name} is not the value the driver has"
    return None


def encode(message: msgspec.Struct) -> bytes:
    return msgspec.msgpack.encode(message)


def decode_setup(data: bytes) -> Setup:
    return msgspec.msgpack.decode(data, type=Setup)


def decode_hello(data: bytes) -> Hello:
    return msgspec.msgpack.decode(data, type=Hello)


def decode_order(data: bytes) -> Order:
    return msgspec.msgpack.decode(data, type=Order)


def decode_outcome(data: bytes) -> Outcome:
    return msgspec.msgpack.decode(data, type=Outcome)
