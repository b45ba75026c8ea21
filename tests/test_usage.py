"""``with: {usage: true}``: what each try cost, from the CLI's own JSON events.

The streams in tests/fixtures/usage/ were recorded from the real Claude Code
2.1.332, Codex 0.171.0 and Gemini CLI 0.61.0 (run against a stand-in model API on
loopback, so the tokens are made up but every shape and total is the CLI's own).
The fake agent replays them when it is asked for JSON, which also checks that
dagbox asks with the flags each CLI needs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dagbox.engine.events import TryFinished
from dagbox.harness.usage import Reader, Usage
from tests.conftest import REPO
from tests.test_bench import bench, results, write
from tests.test_engine import run_text

FAKE = REPO / "tests" / "fixtures" / "fake-agent"
RECORDED = REPO / "tests" / "fixtures" / "usage"


def read(name: str, fmt: str, model: str | None = None) -> tuple[Reader, list[str], str]:
    reader = Reader(fmt, model)
    shown = []
    for line in (RECORDED / f"{name}.jsonl").read_text().splitlines():
        shown += reader.line(line)
    answer, left = reader.finish()
    return reader, shown + left, answer


@pytest.mark.parametrize(
    ("name", "fmt", "usage"),
    [
        (
            "claude",
            "claude",
            Usage(
                input_tokens=4,
                output_tokens=129,
                cached_tokens=31432 + 5642,
                cost_usd=0.0370924,
                turns=2,
                model="claude-opus-5-5",
            ),
        ),
        (
            "codex",
            "codex",
            Usage(input_tokens=16634, output_tokens=239, cached_tokens=11136, model="gpt-5.5"),
        ),
        (
            "gemini",
            "gemini",
            Usage(
                input_tokens=19001,
                output_tokens=67,
                cached_tokens=8123,
                model="gemini-3.1-pro-preview",  # not "auto", nor the router's flash-lite
            ),
        ),
    ],
)
def test_a_recorded_run_gives_its_usage_answer_and_progress(name, fmt, usage):
    reader, shown, answer = read(name, fmt, "gpt-5.5" if fmt == "codex" else None)
    assert reader.usage == usage
    assert answer == "All 3 tests pass."  # what the CLI prints in text mode
    assert shown[0] in ("I will run the test suite.", "I'll run the test suite.")
    assert any(line.startswith("> ") and "pytest" in line for line in shown)  # the tool call
    assert answer not in shown  # shown once, as the answer


def test_a_failed_run_has_no_answer_and_says_why():
    reader, shown, answer = read("claude-error", "claude")
    assert answer == "" and reader.usage.cost_usd == 0.032172  # what it spent before failing
    assert any(line.startswith("error: API Error: 500") for line in shown)
    reader, shown, answer = read("codex-failed", "codex")
    assert answer == ""
    errors = [line for line in shown if line.startswith("error: ")]
    assert len(errors) == 1 and "context window" in errors[0]  # said twice by codex, shown once


def test_a_line_that_is_not_json_is_shown_not_lost():
    reader = Reader("claude")
    assert reader.line("Warning: something odd") == ["Warning: something odd"]
    assert reader.line("[1, 2]") == ["[1, 2]"]
    assert reader.line("") == []


@pytest.fixture
def agents(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("claude", "codex", "gemini"):
        (folder / name).symlink_to(FAKE)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    return folder


@pytest.mark.parametrize("provider", ["claude", "codex", "gemini"])
def test_a_run_with_usage_journals_it_and_keeps_the_answer_as_output(
    tmp_path, agents, monkeypatch, provider
):
    monkeypatch.setenv("FAKE_AGENT_REPLAY", str(RECORDED / f"{provider}.jsonl"))
    ran = run_text(
        tmp_path,
        f"""
        steps:
          - id: agent
            action: harness.run
            output: ANSWER
            with: {{provider: {provider}, prompt: '- run the tests', model: m1, usage: true}}
          - id: after
            depends: [agent]
            run: echo "got ${{ANSWER}}"
        """,
    )
    assert ran.result.status == "succeeded", [(s.name, s.error) for s in ran.result.steps]
    assert ran.stdout("agent") == "All 3 tests pass.\n"
    assert ran.stdout("after") == "got All 3 tests pass.\n"
    stderr = Path(ran.step("agent").stderr_file).read_text()
    assert "pytest" in stderr and '"type"' not in stderr  # readable, not raw events
    finished = ran.of(TryFinished)[0]
    assert finished.usage is not None and finished.usage.output_tokens in (129, 239, 67)
    journal = next(ran.home.rglob("attempts/*/1.jsonl")).read_text().splitlines()
    usage = next(json.loads(e)["usage"] for e in journal if '"try.finished"' in e)
    assert set(usage) == {
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cost_usd",
        "turns",
        "model",
    }
    if provider == "codex":
        assert usage["model"] == "m1" and usage["cost_usd"] is None  # codex says neither


def test_without_usage_the_output_is_the_clis_own(tmp_path, agents, monkeypatch):
    monkeypatch.setenv("FAKE_AGENT_REPLAY", str(RECORDED / "claude.jsonl"))
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: agent
            action: harness.run
            with: {provider: claude, prompt: hi}
        """,
    )
    assert ran.stdout("agent") == "claude answered: hi\n"  # not asked for JSON: no replay
    assert ran.of(TryFinished)[0].usage is None


def test_bench_sums_tokens_and_cost_per_run_and_per_success(tmp_path, agents):
    dag = write(
        tmp_path,
        f"""
        params: [CODE=0]
        steps:
          - id: agent
            action: harness.run
            env:
              - FAKE_AGENT_EXIT: ${{params.CODE}}
              - FAKE_AGENT_REPLAY: {RECORDED / "claude.jsonl"}
            with: {{provider: claude, prompt: 'go', usage: true}}
        """,
    )
    out = tmp_path / "out"
    done = bench(tmp_path, str(dag), "--matrix", "CODE=0,1", "--out", str(out), "-o", "quiet")
    assert done.returncode == 0, done.stderr
    lines = {r["cell"]: r for r in results(out)}
    assert lines["CODE=0"]["usage"] == {
        "input_tokens": 4,
        "output_tokens": 129,
        "cached_tokens": 37074,
        "cost_usd": 0.037092,
    }
    assert lines["CODE=1"]["steps"][0]["usage"]["cost_usd"] == 0.037092  # failed, still paid
    summary = {row["cell"]: row for row in json.loads((out / "summary.json").read_text())["cells"]}
    assert summary["CODE=0"]["tokens_per_success"] == 133
    assert summary["CODE=1"]["cost_usd_per_run"] == 0.037092
    assert summary["CODE=1"]["cost_usd_per_success"] is None  # nothing solved
    assert "$/ok" in done.stdout and "0.0371" in done.stdout
