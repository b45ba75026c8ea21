"""The scheduler against real host processes: order, concurrency, failures, retries, values.

Concurrency is proved by rendezvous (each step waits, with a bound, for the
other's marker file), never by sleeping in the test.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import anyio
import pytest

from dagbox.compiler import compile
from dagbox.engine.events import StepRetrying, StepStarted
from tests.helpers import alive, run_text

WAIT_FOR = 'for i in $(seq 200); do [ -f "{f}" ] && break; sleep 0.05; done; [ -f "{f}" ]'


def test_independent_steps_start_together(tmp_path):
    ran = run_text(
        tmp_path,
        f"""
        steps:
          - id: a
            run: touch a.on; {WAIT_FOR.format(f="b.on")}
          - id: b
            run: touch b.on; {WAIT_FOR.format(f="a.on")}
        """,
    )
    assert ran.result.status == "succeeded"


def test_a_dependent_starts_after_its_dependency_ends(tmp_path):
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: second
            depends: first
            run: test -f first.done && echo ok
          - id: first
            run: touch first.done
        """,
    )
    assert ran.result.status == "succeeded"
    started = [e.step for e in ran.of(StepStarted)]
    assert started == ["first", "second"]


def test_max_active_steps_runs_one_at_a_time_in_file_order(tmp_path):
    ran = run_text(
        tmp_path,
        """
        max_active_steps: 1
        steps:
          - {id: a, run: 'test ! -f running && touch running && rm running'}
          - {id: b, run: 'test ! -f running && touch running && rm running'}
          - {id: c, depends: a, run: 'test ! -f running && touch running && rm running'}
          - {id: d, run: 'test ! -f running && touch running && rm running'}
        """,
    )
    assert ran.result.status == "succeeded"
    assert [e.step for e in ran.of(StepStarted)] == ["a", "b", "d", "c"]


def test_jobs_option_overrides_max_active_steps(tmp_path):
    ran = run_text(
        tmp_path,
        f"""
        max_active_steps: 1
        steps:
          - id: a
            run: touch a.on; {WAIT_FOR.format(f="b.on")}
          - id: b
            run: touch b.on; {WAIT_FOR.format(f="a.on")}
        """,
        max_active=0,
    )
    assert ran.result.status == "succeeded"


def test_chain_runs_in_file_order(tmp_path):
    ran = run_text(
        tmp_path,
        """
        type: chain
        steps:
          - {id: a, run: echo a >> order}
          - {id: b, run: echo b >> order}
          - {id: c, run: echo c >> order}
        """,
    )
    assert (tmp_path / "order").read_text() == "a\nb\nc\n"
    assert ran.result.status == "succeeded"


def test_failure_aborts_dependents_transitively_and_spares_other_branches(tmp_path):
    ran = run_text(
        tmp_path,
        """
        steps:
          - {id: bad, run: exit 3}
          - {id: child, depends: bad, run: echo never}
          - {id: grandchild, depends: child, run: echo never}
          - {id: other, run: echo fine}
        """,
    )
    assert [ran.status(n) for n in ("bad", "child", "grandchild", "other")] == [
        "failed",
        "aborted",
        "aborted",
        "succeeded",
    ]
    assert ran.step("bad").exit_code == 3
    assert ran.result.status == "failed"
    assert ran.result.exit_code == 1


@pytest.mark.parametrize(
    ("rule", "status", "run_status"),
    [
        ("continue_on: failed", "failed", "partially_succeeded"),
        ("continue_on: {exit_code: [3]}", "failed", "partially_succeeded"),
        ("continue_on: {output: 're:^warn(ing)?$'}", "failed", "partially_succeeded"),
        ("continue_on: {output: 'warn'}", "failed", "partially_succeeded"),
        ("continue_on: {failed: true, mark_success: true}", "succeeded", "succeeded"),
        ("continue_on: {exit_code: [4]}", "failed", "failed"),
    ],
)
def test_continue_on(tmp_path, rule, status, run_status):
    ran = run_text(
        tmp_path,
        f"""
        steps:
          - id: flaky
            run: echo warn; exit 3
            {rule}
          - id: next
            depends: flaky
            run: echo next
        """,
    )
    assert ran.status("flaky") == status
    assert ran.result.status == run_status
    assert ran.status("next") == ("aborted" if run_status == "failed" else "succeeded")


def test_nothing_succeeded_means_failed_even_with_continue_on(tmp_path):
    ran = run_text(tmp_path, "steps:\n  - {id: a, run: exit 1, continue_on: failed}\n")
    assert ran.result.status == "failed"


def test_skipped_propagates_unless_continue_on_skipped(tmp_path):
    ran = run_text(
        tmp_path,
        """
        steps:
          - {id: gate, run: echo, preconditions: 'test -f nope'}
          - {id: after, depends: gate, run: echo}
          - {id: gate2, run: echo, preconditions: 'test -f nope', continue_on: skipped}
          - {id: after2, depends: gate2, run: echo}
        """,
    )
    assert [ran.status(n) for n in ("gate", "after", "gate2", "after2")] == [
        "skipped",
        "skipped",
        "skipped",
        "succeeded",
    ]
    assert ran.result.status == "succeeded"


def test_retries_with_exit_code_filter_and_backoff(tmp_path):
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: flaky
            run: n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; [ $n -ge 2 ] || exit 7
            retry_policy: {limit: 3, interval_sec: 0, backoff: true, exit_code: [7]}
          - id: filtered
            run: exit 5
            retry_policy: {limit: 3, exit_code: [7]}
        """,
    )
    assert ran.status("flaky") == "succeeded"
    assert (tmp_path / "n").read_text() == "3\n"
    retries = [e for e in ran.of(StepRetrying) if e.step == "flaky"]
    assert [e.attempt for e in retries] == [1, 2]
    assert ran.step("filtered").attempts == 1
    record = {s["name"]: s for s in ran.record["steps"]}
    assert record["flaky"]["retry_count"] == 2
    assert record["flaky"]["stdout_file"].endswith("/1-flaky.3.stdout")


def test_retry_limit_is_extra_attempts_and_delays_follow_backoff(tmp_path):
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: always
            run: exit 1
            retry_policy: {limit: 2, interval_sec: 0, backoff: 3, max_interval_sec: 0}
        """,
    )
    assert ran.step("always").attempts == 3
    assert [e.delay_sec for e in ran.of(StepRetrying)] == [0.0, 0.0]


def test_retry_delay_arithmetic():
    from dagbox.engine.retry import retry_delay
    from dagbox.plan import RetryPolicy
    from dagbox.values import Scope

    policy = RetryPolicy(limit=5, interval_sec=2, backoff=True, max_interval_sec=10)
    scope = Scope({}, {})
    assert [retry_delay(policy, n, scope) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 10.0]
    policy = RetryPolicy(limit=5, interval_sec="${X}", backoff=1.5)
    assert retry_delay(policy, 3, Scope({}, {"X": "4"})) == 9.0


def test_step_timeout_fails_with_124_kills_the_group_and_is_not_retried(tmp_path):
    ran = run_text(
        tmp_path,
        """
        max_clean_up_time_sec: 1
        steps:
          - id: slow
            timeout_sec: 1
            retry_policy: {limit: 2}
            run: sleep 60 & echo $! > child; echo $$ > pid; trap '' TERM; wait
        """,
    )
    step = ran.step("slow")
    assert (step.status, step.exit_code, step.attempts) == ("failed", 124, 1)
    assert "timed out" in step.error
    for name in ("pid", "child"):
        assert not alive(int((tmp_path / name).read_text())), name


def test_signal_on_stop_is_sent_first(tmp_path):
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: s
            timeout_sec: 1
            signal_on_stop: SIGINT
            run: trap 'echo got-int > sig; exit 0' INT; touch ready; while true; do sleep 0.05; done
        """,
    )
    assert ran.step("s").exit_code == 124
    assert (tmp_path / "sig").read_text() == "got-int\n"


def test_dag_timeout_aborts_running_steps_and_still_runs_handlers(tmp_path):
    ran = run_text(
        tmp_path,
        """
        timeout_sec: 1
        handler_on:
          failure: {run: echo failure-ran > failure.txt}
          exit: {run: echo "$DAG_RUN_STATUS" > exit.txt}
        steps:
          - {id: slow, run: sleep 30}
          - {id: later, depends: slow, run: echo never}
        """,
    )
    assert ran.result.status == "failed"
    assert (ran.status("slow"), ran.status("later")) == ("aborted", "aborted")
    assert (tmp_path / "failure.txt").exists()
    assert (tmp_path / "exit.txt").read_text() == "failed\n"


def test_handlers_order_and_status(tmp_path):
    ran = run_text(
        tmp_path,
        """
        handler_on:
          init: {run: echo init >> order}
          success: {run: echo "success $DAG_RUN_STATUS" >> order}
          failure: {run: echo failure >> order}
          exit: {run: echo "exit $DAG_RUN_STATUS" >> order}
        steps:
          - {id: a, run: echo a >> order}
        """,
    )
    assert (tmp_path / "order").read_text() == "init\na\nsuccess succeeded\nexit succeeded\n"
    assert ran.record["handlers"]["exit"]["status"] == "succeeded"


def test_init_failure_aborts_without_running_steps(tmp_path):
    ran = run_text(
        tmp_path,
        """
        handler_on:
          init: {run: exit 1}
          abort: {run: touch abort.txt}
          exit: {run: touch exit.txt}
        steps:
          - {id: a, run: touch a.txt}
        """,
    )
    assert ran.result.status == "aborted"
    assert ran.status("a") == "not_started"
    assert (tmp_path / "abort.txt").exists() and (tmp_path / "exit.txt").exists()
    assert not (tmp_path / "a.txt").exists()


def test_failing_exit_handler_fails_a_succeeded_run(tmp_path):
    ran = run_text(
        tmp_path, "handler_on: {exit: {run: exit 2}}\nsteps:\n  - {id: a, run: 'true'}\n"
    )
    assert ran.result.status == "failed"


def test_dag_precondition_not_met_aborts_but_exits_zero(tmp_path):
    ran = run_text(
        tmp_path,
        """
        preconditions:
          - condition: "$(echo no)"
            expected: "yes"
        handler_on:
          abort: {run: touch abort.txt}
        steps:
          - {id: a, run: touch a.txt}
        """,
    )
    assert ran.result.status == "aborted"
    assert ran.result.exit_code == 0
    assert (tmp_path / "abort.txt").exists() and not (tmp_path / "a.txt").exists()


@pytest.mark.parametrize(
    ("condition", "runs"),
    [
        ("preconditions: 'test -d /'", True),
        ("preconditions: 'test -d /nonexistent'", False),
        ("preconditions: [{condition: 'test -d /nonexistent', negate: true}]", True),
        # Dagu 2.x: a value's $(...) and backticks are text; eval runs them.
        ("preconditions: [{condition: '`echo abc`', expected: 'abc'}]", False),
        ("preconditions: [{condition: '$(echo abc)', expected: '$(echo abc)'}]", True),
        ("preconditions: [{eval: '`echo abc`', expected: 'abc'}]", True),
        ("preconditions: [{eval: '$(echo $MODE)', expected: 'production'}]", True),
        ("preconditions: [{condition: '$MODE', expected: 're:^pro'}]", True),
        ("preconditions: [{condition: '$MODE', expected: 're:^dev', negate: true}]", True),
        ("preconditions: [{condition: '${params.P}', expected: 'x'}]", True),
        ("preconditions: ['test -d /', 'test -d /nonexistent']", False),
    ],
)
def test_step_preconditions(tmp_path, condition, runs):
    ran = run_text(
        tmp_path,
        f"""
        params: [P=x]
        env: [MODE=production]
        steps:
          - id: a
            run: echo ran
            {condition}
        """,
    )
    assert ran.status("a") == ("succeeded" if runs else "skipped")


def test_outputs_are_trimmed_and_visible_only_downstream(tmp_path):
    ran = run_text(
        tmp_path,
        """
        steps:
          - {id: make, run: 'printf "  value\\n\\n"', output: VALUE}
          - {id: direct, depends: make, run: 'echo "[$VALUE]"'}
          - {id: indirect, depends: direct, run: 'echo "[$VALUE]"'}
          - {id: unrelated, run: 'echo "[${VALUE:-unset}]"'}
          - id: json
            run: 'echo "{\\"a\\": {\\"b\\": 7}}"'
            output: DOC
          - {id: field, depends: json, action: harness.run, with: {provider: echoer, prompt: 'b=${DOC.a.b}'}}
        harnesses:
          echoer: {binary: echo}
        """,
    )
    assert ran.step("make").outputs == {"VALUE": "value"}
    assert ran.stdout("direct") == "[value]\n"
    assert ran.stdout("indirect") == "[value]\n"
    assert ran.stdout("unrelated") == "[unset]\n"
    assert ran.stdout("field") == "b=7\n"
    assert {s["name"]: s["outputs"] for s in ran.record["steps"]}["make"] == {"VALUE": "value"}


def test_output_larger_than_max_output_size_fails_the_step(tmp_path):
    ran = run_text(
        tmp_path,
        """
        max_output_size: 10
        steps:
          - {id: big, run: 'echo 0123456789abcdef', output: BIG}
        """,
    )
    assert ran.status("big") == "failed"
    assert "output exceeded maximum size limit of 10 bytes" in ran.step("big").error


def test_params_env_and_expansion_rules(tmp_path):
    ran = run_text(
        tmp_path,
        r"""
        params: "WHO=world COUNT=2"
        env:
          - BASE: /opt
          - TOOLS: ${BASE}/tools
          - TODAY: "`echo 2026`"  # Dagu 2.x: text (only an eval: runs it)
        steps:
          - id: show
            env:
              - LOCAL=${TOOLS}/bin
            run: echo "${params.WHO} $WHO $COUNT ${env.TOOLS} $LOCAL $TODAY" '\${params.WHO}' "$DAG_NAME $DAG_RUN_ID $DAG_RUN_STEP_NAME"
        """,
        params={"WHO": "there"},
    )
    assert (
        ran.stdout("show")
        == "there there 2 /opt/tools /opt/tools/bin `echo 2026` ${params.WHO} dag r1 show\n"
    )


def test_positional_params_and_argv_steps(tmp_path):
    ran = run_text(
        tmp_path,
        """
        params: "first second"
        env: [X=from-env]
        steps:
          - {id: argv, exec: {command: printf, args: ['%s|%s|%s', '${params.1}', '$X', '$NOPE']}}
        """,
    )
    assert ran.stdout("argv") == "first|from-env|$NOPE"


def test_working_dir_defaults_to_the_dag_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    ran = run_text(
        tmp_path,
        """
        steps:
          - {id: here, run: pwd}
          - {id: there, working_dir: sub, run: pwd}
        """,
    )
    assert ran.stdout("here").strip() == str(tmp_path)
    assert ran.stdout("there").strip() == str(tmp_path / "sub")


def test_shell_choice_and_errexit(tmp_path):
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: default_e
            run: |
              false
              echo not-reached
          - id: own_shell
            shell: sh
            run: |
              false
              echo reached
          - id: bash
            shell: bash
            run: echo "${BASH_VERSION:+bash}"
          - id: interp
            command: python3
            script: print(6 * 7)
          - id: shebang
            script: |
              #!/usr/bin/env python3
              print("from python")
        """,
    )
    assert ran.status("default_e") == "failed"
    assert ran.stdout("own_shell") == "reached\n"
    assert ran.stdout("bash") == "bash\n"
    assert ran.stdout("interp") == "42\n"
    assert ran.stdout("shebang") == "from python\n"


def test_stdin_is_closed(tmp_path):
    ran = run_text(tmp_path, "steps:\n  - {id: a, run: cat}\n")
    assert ran.status("a") == "succeeded"


def test_missing_program_and_a_working_dir_that_cannot_be_made(tmp_path):
    (tmp_path / "a-file").write_text("")
    ran = run_text(
        tmp_path,
        f"""
        steps:
          - {{id: nope, exec: {{command: no-such-program-xyz}}}}
          - {{id: nodir, working_dir: {tmp_path}/a-file/dir, run: echo}}
        """,
    )
    assert (ran.step("nope").exit_code, ran.status("nope")) == (127, "failed")
    assert "command not found" in ran.step("nope").error
    assert ran.step("nodir").error.startswith("cannot create working directory")


def test_a_step_working_dir_that_is_not_there_yet_is_made(tmp_path):
    """As Dagu does (its command executor makes the directory before it starts)."""
    ran = run_text(
        tmp_path,
        """
        steps:
          - {id: here, working_dir: made/for/me, run: pwd}
        """,
    )
    assert ran.status("here") == "succeeded"
    assert ran.stdout("here").strip() == str(tmp_path / "made" / "for" / "me")


def test_an_init_handler_skipped_by_its_preconditions_lets_the_steps_run(tmp_path):
    ran = run_text(
        tmp_path,
        """
        handler_on:
          init: {run: 'true', preconditions: [{condition: 'no', expected: 'yes'}]}
        steps:
          - {id: a, run: 'true'}
        """,
    )
    assert ran.result.handlers["init"].status == "skipped"
    assert (ran.status("a"), ran.result.status) == ("succeeded", "succeeded")


def test_every_precondition_is_evaluated_even_after_one_is_not_met(tmp_path):
    ran = run_text(
        tmp_path,
        f"""
        steps:
          - id: a
            preconditions:
              - {{condition: 'no', expected: 'yes'}}
              - {{condition: 'touch {tmp_path}/second-ran'}}
            run: 'true'
        """,
    )
    assert ran.status("a") == "skipped"
    assert (tmp_path / "second-ran").exists()


def test_handlers_get_no_step_log_file_variables(tmp_path):
    ran = run_text(
        tmp_path,
        """
        handler_on:
          exit: {run: 'echo "out=${DAG_RUN_STEP_STDOUT_FILE:-unset} err=${DAG_RUN_STEP_STDERR_FILE:-unset}"'}
        steps:
          - {id: a, run: 'echo "$DAG_RUN_STEP_STDOUT_FILE"'}
        """,
    )
    assert ran.stdout("a").strip() == ran.step("a").stdout_file
    handler = ran.result.handlers["exit"]
    assert Path(handler.stdout_file).read_text().strip() == "out=unset err=unset"


def test_logs_keep_every_byte_and_records_are_final(tmp_path):
    ran = run_text(
        tmp_path,
        r"""
        steps:
          - id: bytes
            run: printf 'a\nb\377\nno-newline'; printf 'err' >&2
        """,
    )
    step = ran.step("bytes")
    assert Path(step.stdout_file).read_bytes() == b"a\nb\xff\nno-newline"
    assert Path(step.stderr_file).read_bytes() == b"err"
    record = ran.record
    assert record["status"] == "succeeded" and record["finished_at"]
    assert set(record) >= {
        "run_id",
        "dag",
        "file",
        "status",
        "params",
        "started_at",
        "finished_at",
        "error",
        "steps",
        "handlers",
    }
    events = [
        json.loads(line)
        for line in next(ran.home.glob("runs/*/*/events.jsonl")).read_text().splitlines()
    ]
    assert [e["event"] for e in events] == [
        "run.started",
        "step.started",
        "step.finished",
        "run.finished",
    ]
    assert all(e["ts"].endswith("+00:00") for e in events)


def test_harness_fallback_keeps_only_the_successful_try_stdout(tmp_path):
    ran = run_text(
        tmp_path,
        """
        harnesses:
          broken: {binary: sh, prefix_args: [-c, 'echo primary-out; echo primary-err >&2; exit 1', x]}
          good: {binary: echo}
        steps:
          - id: agent
            action: harness.run
            output: OUT
            with:
              provider: broken
              prompt: hello
              fallback: [{provider: good}]
        """,
    )
    step = ran.step("agent")
    assert step.status == "succeeded"
    assert step.outputs == {"OUT": "hello"}
    assert Path(step.stdout_file).read_text() == "hello\n"  # the step's stdout: the good try's
    stderr = (
        Path(step.stderr_file).with_name("1-agent.1.1.stderr").read_text()
    )  # the first try's own
    assert "primary-err" in stderr
    assert (
        "harness: attempt 1/2 with broken failed (exit 1); trying fallback 2/2 with good" in stderr
    )


def test_missing_harness_binary_on_the_host(tmp_path):
    ran = run_text(
        tmp_path,
        """
        steps:
          - {id: agent, action: harness.run, with: {provider: claude, prompt: hi}}
        """,
    )
    step = ran.step("agent")
    assert (step.status, step.exit_code) == ("failed", 1)
    assert step.error == 'harness: "claude" CLI not found in PATH; install it first'


def test_signal_numbers():
    from dagbox.engine.attempt import signal_number as _signal_number

    assert _signal_number(None) == signal.SIGTERM
    assert _signal_number("int") == signal.SIGINT
    assert _signal_number("SIGKILL") == signal.SIGKILL
    assert _signal_number("15") == 15


def test_delay_sec_staggers_step_starts(tmp_path):
    from datetime import datetime

    ran = run_text(
        tmp_path,
        """
        delay_sec: 1
        steps:
          - {id: a, run: 'true'}
          - {id: b, run: 'true'}
        """,
    )
    starts = [datetime.fromisoformat(e.ts) for e in ran.of(StepStarted)]
    assert (starts[1] - starts[0]).total_seconds() >= 0.9


def test_an_unusable_dag_precondition_fails_the_run(tmp_path):
    ran = run_text(
        tmp_path,
        """
        preconditions: [{eval: '$(exit 3)x${BROKEN', expected: 'x'}]
        steps:
          - {id: a, run: 'true'}
        """,
    )
    assert ran.result.status == "failed"
    assert "cannot evaluate precondition" in ran.result.error


def test_container_steps_fail_clearly_without_a_container_runtime(tmp_path):
    """An engine given only the host runtime says so, instead of running the step on the host."""
    from dagbox.engine.context import RunOptions
    from dagbox.engine.scheduler import Scheduler
    from dagbox.runtimes import Runtimes
    from dagbox.runtimes.host import HostRuntime
    from tests.conftest import load_text

    dag = load_text(
        """
        steps:
          - {id: boxed, run: 'true', container: {image: alpine}}
          - {id: free, run: 'true'}
        """
    ).dag
    engine = Scheduler(
        compile(dag, file=tmp_path / "d.yaml"),
        Runtimes(HostRuntime(tmp_path)),
        lambda e: None,
        RunOptions(run_id="r"),
    )
    result = anyio.run(engine.run)
    statuses = {s.name: (s.status, s.error) for s in result.steps}
    assert statuses["free"] == ("succeeded", None)
    assert statuses["boxed"][0] == "failed"
    assert "cannot run containers yet" in statuses["boxed"][1]


def test_secrets_never_reach_logs_events_or_records(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-hostsecret-123456")
    ran = run_text(
        tmp_path,
        """
        params: [DB_PASSWORD=hunter2-secret]
        env: [SERVICE_TOKEN=tok-abcdef-987]
        steps:
          - id: leak
            output: OUT
            run: |
              echo "key=$OPENAI_API_KEY token=$SERVICE_TOKEN pw=${params.DB_PASSWORD}"
              printf 'split-%s' "$SERVICE_TOKEN" | head -c 10; printf '%s\\n' "$(printf '%s' "$SERVICE_TOKEN" | tail -c +5)"
              echo "$SERVICE_TOKEN" >&2
              exit 3
            continue_on: {failed: true, mark_success: true}
        """,
    )
    home = ran.home
    everything = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    for secret in (b"sk-hostsecret-123456", b"tok-abcdef-987", b"hunter2-secret"):
        assert secret not in everything
    assert ran.stdout("leak").startswith("key=*** token=*** pw=***\n")
    assert ran.record["params"]["DB_PASSWORD"] == "***"
    assert (
        ran.step("leak").outputs["OUT"].startswith("key=sk-hostsecret")
    )  # the real value flows on


def test_stream_redactor_catches_secrets_split_across_chunks():
    from dagbox.secrets import Redactor

    stream = Redactor(["abcdefgh"]).stream()
    pieces = [
        stream.feed(b"x abc"),
        stream.feed(b"de"),
        stream.feed(b"fgh y\nabcz\n"),
        stream.flush(),
    ]
    assert b"".join(pieces) == b"x *** y\nabcz\n"
    assert pieces[0] == b"x "  # "abc" is held back while it could still be a secret


def test_the_validator_knows_every_run_variable_a_step_gets(tmp_path):
    """spec.rules.RUN_VARIABLES (which keeps container.env warnings quiet) lists the same
    variables the engine sets; a new one added to one side only fails here."""
    from dagbox.spec.rules import RUN_VARIABLES

    ran = run_text(
        tmp_path,
        """
        steps:
          - id: show
            run: env
        """,
    )
    names = {line.split("=", 1)[0] for line in ran.stdout("show").splitlines() if "=" in line}
    set_by_dagbox = {n for n in names - set(os.environ) if n.startswith(("DAG_", "DAGU_"))}
    assert set_by_dagbox and set_by_dagbox <= set(RUN_VARIABLES)


def test_fields_of_a_json_output_resolve_in_run_lines(tmp_path):
    """As Dagu's own integration test does it (``${CONFIG.host}`` in a command)."""
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: config
            run: |
              echo '{"port": 8080, "host": "localhost"}'
            output: CONFIG
          - id: start
            depends: config
            run: echo "Starting server at ${CONFIG.host}:${CONFIG.port}"
            output: OUT
        """,
    )
    assert ran.step("start").outputs == {"OUT": "Starting server at localhost:8080"}


def test_a_param_declared_without_a_value_stays_as_written(tmp_path):
    """As Dagu's params fixtures: a missing runtime param is left unchanged, not emptied."""
    ran = run_text(
        tmp_path,
        """
        params:
          - name: environment
            description: Runtime environment.
        steps:
          - id: write
            run: printf '%s\\n' '${params.environment}'
        """,
    )
    assert ran.stdout("write") == "${params.environment}\n"


def test_params_resolve_in_the_root_shell_and_working_dir(tmp_path):
    ran = run_text(
        tmp_path,
        """
        params:
          - {name: environment, description: where}
          - {name: shell_arg, description: how}
        working_dir: "root-work-${params.environment}"
        shell: "bash ${params.shell_arg}"
        steps:
          - id: write
            run: echo "$BASH_VERSION" > here.txt; pwd
        """,
        params={"environment": "prod", "shell_arg": "-c"},
    )
    assert ran.status("write") == "succeeded", ran.step("write").error
    assert ran.stdout("write").strip() == str(tmp_path / "root-work-prod")
    assert (tmp_path / "root-work-prod" / "here.txt").read_text().strip()  # bash ran it


def test_a_command_steps_with_shell_and_shell_args_are_its_shell(tmp_path):
    """A command executor's config (``with: {shell, shell_args}``) is used, not dropped."""
    ran = run_text(
        tmp_path,
        """
        steps:
          - {id: strict, run: 'false | true', with: {shell: bash, shell_args: [-o, pipefail]}}
          - {id: plain, run: 'false | true'}
        """,
    )
    assert (ran.status("strict"), ran.status("plain")) == ("failed", "succeeded")


def test_an_agent_steps_stderr_holds_every_try_in_order(tmp_path):
    """The step's stderr (``dagbox logs RUN STEP --stderr``) shows each try's stderr after a
    header, with the harness's own line between them; its stdout stays the good try's."""
    ran = run_text(
        tmp_path,
        """
        harnesses:
          broken: {binary: sh, prefix_args: [-c, 'echo primary-out; echo primary-err >&2; exit 1', x]}
          good: {binary: sh, prefix_args: [-c, 'echo good-err >&2; echo "$0"']}
        steps:
          - id: agent
            action: harness.run
            with:
              provider: broken
              prompt: hello
              fallback: [{provider: good}]
        """,
    )
    step = ran.step("agent")
    assert Path(step.stdout_file).read_text() == "hello\n"
    assert Path(step.stderr_file).name == "1-agent.1.stderr"
    assert Path(step.stderr_file).read_text() == (
        "--- try 1: broken ---\n"
        "primary-err\n"
        "harness: attempt 1/2 with broken failed (exit 1); trying fallback 2/2 with good\n"
        "--- try 2: good ---\n"
        "good-err\n"
    )
    record = ran.record["steps"][0]
    assert record["stderr_file"] == step.stderr_file


def test_positional_params_reach_shell_text_and_preconditions(tmp_path):
    """``params: "foo bar"`` gives ``$1`` and ``$2`` as in Dagu (a shell cannot take them
    from its environment, so they are pasted in), but not inside single quotes."""
    ran = run_text(
        tmp_path,
        """
        params: "foo bar"
        steps:
          - id: line
            run: echo "1=$1 2=${2}"
          - id: quoted
            run: echo "x y" | awk '{print $1}'
          - id: checked
            preconditions: [{condition: "$1", expected: foo}]
            run: echo ran
        """,
    )
    assert ran.stdout("line") == "1=foo 2=bar\n"
    assert ran.stdout("quoted") == "x\n"
    assert ran.status("checked") == "succeeded"


def test_a_working_dir_a_step_removed_is_made_again(tmp_path):
    """The host runtime remembers the working directories it made (one trip to a thread
    each, not one per step); one a step removed since is made again."""
    ran = run_text(
        tmp_path,
        """
        type: chain
        steps:
          - {id: first, working_dir: wd, run: 'rm -rf "$PWD"'}
          - {id: second, working_dir: wd, run: pwd}
        """,
    )
    assert ran.status("second") == "succeeded", ran.error("second")
    assert ran.stdout("second").strip() == str(tmp_path / "wd")
