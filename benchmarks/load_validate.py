"""Speed of loading and validating DAG files (issue: foundation).

Targets, on the 2-core test machines:
  - a generated 1,000-step DAG loads and validates end to end in under 300 ms,
    of which building the Structs and checking the rules takes under 15 ms;
  - `dagbox validate` on a small file takes under 150 ms wall for the whole process.

Prints medians of repeated runs. Not a timed test: these machines are shared
and noisy, so read the figures, don't gate on them.

    python benchmarks/load_validate.py [--steps 1000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from dagbox.spec import load, rules
from dagbox.spec.build import Builder
from dagbox.spec.issues import Sink
from dagbox.spec.model import Dag
from dagbox.spec.source import read


def generate(steps: int) -> str:
    """A DAG in the shapes people write: block and flow style, containers, harness steps."""
    out = [
        "name: generated",
        "params: [PROVIDER=claude, MODEL=sonnet]",
        "env:",
        "  - WORKSPACE: /workspace",
        "  - LOG_LEVEL=info",
        "harnesses:",
        "  fake: {binary: fake-agent, prompt_mode: flag, prompt_flag: --prompt}",
        "steps:",
    ]
    for i in range(steps):
        deps = f"[s{i - 1}, s{i // 2}]" if i > 1 else ("s0" if i == 1 else "[]")
        kind = i % 4
        if kind == 0:
            out += [
                f"  - id: s{i}",
                f"    depends: {deps}",
                f"    run: echo step {i} && ls -l /tmp | wc -l",
                "    env:",
                f"      - STEP: '{i}'",
                "    retry_policy: {limit: 2, interval_sec: 1, backoff: true}",
            ]
        elif kind == 1:
            out += [
                f"  - id: s{i}",
                f"    depends: {deps}",
                "    action: harness.run",
                "    timeout_sec: 600",
                f"    output: OUT_{i}",
                "    with:",
                "      provider: ${params.PROVIDER}",
                f"      prompt: 'Fix the failing test number {i}'",
                "      model: ${params.MODEL}",
                "      fallback: [{provider: fake, max_turns: 3}]",
            ]
        elif kind == 2:
            out += [
                f"  - id: s{i}",
                f"    depends: {deps}",
                "    container:",
                "      image: dagbox-test/busybox:latest",
                "      pull_policy: never",
                "      volumes: ['.:/workspace', 'cache:/root/.cache:rw']",
                "      env: {MODE: test, DEBUG: '1'}",
                "      network: none",
                "    run: |",
                f"      echo building {i}",
                "      make -j2 test",
            ]
        else:
            out += [
                f"  - {{id: s{i}, depends: {deps}, run: 'true', continue_on: {{failed: true, exit_code: [1, 2]}},"
                " preconditions: [{condition: test -d /tmp}]}",
            ]
    return "\n".join(out) + "\n"


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    text = generate(args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.yaml"
        big.write_text(text)
        small = Path(tmp) / "small.yaml"
        small.write_text(
            "steps:\n  - id: a\n    run: echo hi\n  - id: b\n    depends: a\n    run: echo bye\n"
        )

        assert len(load(big).dag.steps) == args.steps
        source = read(big)

        def build_and_check() -> None:
            builder, issues = Builder(), []
            dag = builder.build(source.data, Dag, Sink(issues))
            rules.check(dag, builder.sinks, builder.flawed, Sink(issues))
            assert not [i for i in issues if i.severity == "error"]

        end_to_end = median_ms(lambda: load(big), args.repeat)
        parse_only = median_ms(lambda: read(big), args.repeat)
        structs = median_ms(build_and_check, args.repeat * 3)

        command = [sys.executable, "-m", "dagbox", "validate", str(small)]
        subprocess.run(command, check=True, capture_output=True)  # warm the page cache
        process = median_ms(
            lambda: subprocess.run(command, check=True, capture_output=True), args.repeat
        )
        python_floor = median_ms(
            lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), args.repeat
        )

    print(f"libyaml (CSafeLoader) available: {yaml.__with_libyaml__}")
    print(
        f"generated DAG: {args.steps} steps, {len(text) / 1024:.0f} KiB, {text.count(chr(10))} lines"
    )
    print(f"load + validate, end to end:      {end_to_end:7.1f} ms   (target < 300 ms)")
    print(f"  of which YAML parsing:          {parse_only:7.1f} ms")
    print(f"  of which Structs + rules:       {structs:7.1f} ms   (target < 15 ms)")
    print(f"`dagbox validate` small file:     {process:7.1f} ms   (target < 150 ms wall)")
    print(f"  bare `python -c pass` for scale: {python_floor:6.1f} ms")
    print(f"ratio Structs+rules / end to end: {structs / end_to_end:.3f}")


if __name__ == "__main__":
    main()
