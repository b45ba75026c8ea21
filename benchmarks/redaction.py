"""Speed of secret redaction on step output: dagbox's redactor (RE2) beside the same
patterns matched with Python's ``re`` (what dagbox used before), in one run.

Every chunk of every step's output goes through the redactor, on the event loop, so its
throughput bounds a run's output throughput once secrets are known. Each secret counts
with all the forms dagbox hunts (as is, JSON-escaped, shell-quoted, ...).

    python benchmarks/redaction.py [--megabytes 64]
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import re
import string
import time

from dagbox.secrets import MASK, Redactor


def throughput(feed, chunk: bytes, megabytes: int) -> float:
    total = 0
    began = time.perf_counter()
    while total < megabytes * 1024 * 1024:
        feed(chunk)
        total += len(chunk)
    return total / (time.perf_counter() - began) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=int, default=64)
    args = parser.parse_args()
    random.seed(1)
    chunk = os.urandom(32 * 1024).hex().encode()  # 64 KiB of text without a secret in it
    print(f"{'secrets':>8}  {'RE2 (dagbox)':>14}  {'Python re':>12}  ratio")
    for count in (3, 20, 50, 200):
        values = [
            "".join(random.choice(string.ascii_letters) for _ in range(40)) for _ in range(count)
        ]
        redactor = Redactor(values)
        stream = redactor.stream()
        python = re.compile(b"|".join(re.escape(v.encode()) for v in redactor.values))
        fast = throughput(stream.feed, chunk, args.megabytes)
        slow = throughput(functools.partial(python.sub, MASK.encode()), chunk, args.megabytes)
        print(f"{count:>8}  {fast:>9.0f} MB/s  {slow:>7.0f} MB/s  {fast / slow:5.1f}x")


if __name__ == "__main__":
    main()
