"""Scheduling semantics on a fake runtime: what becomes of dependents, runs and retries
when steps end as they do, without processes (test_engine.py runs real ones)."""

from __future__ import annotations

from dagbox.engine.events import StepFinished, StepRetrying
from tests.helpers import FakeRuntime, schedule


def test_a_failure_aborts_its_dependents_and_spares_other_branches():
    ran = schedule(
        """
        steps:
          - {id: a, run: x}
          - {id: b, depends: a, run: x}
          - {id: c, depends: b, run: x}
          - {id: d, run: x}
        """,
        FakeRuntime(exits={"a": 1}),
    )
    assert [ran.status(n) for n in "abcd"] == ["failed", "aborted", "aborted", "succeeded"]
    errors = {e.step: e.error for e in ran.events if isinstance(e, StepFinished)}
    assert errors["b"] == "upstream failed (a)" and errors["c"] == "upstream failed (b)"
    assert ran.result.status == "failed"
    assert [c.name for c in ran.runtime.ran] == ["a", "d"]


def test_continue_on_lets_dependents_run_and_the_run_partly_succeed():
    ran = schedule(
        """
        steps:
          - {id: a, run: x, continue_on: {exit_code: [3]}}
          - {id: b, depends: a, run: x}
        """,
        FakeRuntime(exits={"a": 3}),
    )
    assert [ran.status(n) for n in "ab"] == ["failed", "succeeded"]
    assert ran.result.status == "partially_succeeded"


def test_a_skipped_step_skips_its_dependents_unless_they_continue_on_skipped():
    ran = schedule(
        """
        steps:
          - {id: a, run: x, preconditions: [{condition: 'no', expected: 'yes'}]}
          - {id: b, depends: a, run: x}
          - {id: c, run: x, preconditions: [{condition: 'no', expected: 'yes'}], continue_on: {skipped: true}}
          - {id: d, depends: c, run: x}
        """
    )
    assert [ran.status(n) for n in "abcd"] == ["skipped", "skipped", "skipped", "succeeded"]
    assert ran.result.status == "succeeded"


def test_retries_only_for_the_exit_codes_the_policy_names():
    ran = schedule(
        """
        steps:
          - {id: a, run: x, retry_policy: {limit: 3, exit_code: [1]}}
          - {id: b, run: x, retry_policy: {limit: 2, exit_code: [2]}}
        """,
        FakeRuntime(exits={"a": 2, "b": 2}),
    )
    attempts = {s.name: s.attempts for s in ran.result.steps}
    assert attempts == {"a": 1, "b": 3}
    assert [e.step for e in ran.events if isinstance(e, StepRetrying)] == ["b", "b"]


def test_outputs_reach_descendants_and_handlers():
    ran = schedule(
        """
        handler_on: {exit: {run: x}}
        steps:
          - {id: a, run: x, output: A}
          - {id: b, depends: a, run: x}
          - {id: c, run: x}
        """,
        FakeRuntime(says={"a": b"from a\n"}),
    )
    env = {c.name: c.env for c in ran.runtime.ran}
    assert env["b"]["A"] == "from a" and env["onExit"]["A"] == "from a"
    assert "A" not in env["c"]


def test_ten_thousand_steps_with_the_fake_runtime():
    """The scheduler alone (no processes) gets through a large DAG with exact statuses."""
    steps = "\n".join(
        f"  - {{id: s{i}, run: 'true'{', depends: s' + str(i - 1) if i % 10 else ''}}}"
        for i in range(10_000)
    )
    ran = schedule("steps:\n" + steps + "\n")
    assert ran.result.status == "succeeded"
    assert sum(isinstance(e, StepFinished) for e in ran.events) == 10_000
