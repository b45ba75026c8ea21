"""Key spellings: Dagu 1.x camelCase aliases, server-only keys, unsupported keys."""

import pytest

from tests.conftest import load_text, one_problem


def test_dagu1_file_loads_unchanged():
    dag = load_text(
        """
        maxActiveSteps: 2
        timeoutSec: 60
        maxCleanUpTimeSec: 3
        maxOutputSize: 100
        delaySec: 1
        workingDir: /tmp
        handlerOn:
          failure: {command: echo failed}
          cancel: {command: echo cancelled}
        steps:
          - name: a
            command: echo
            dir: /var
            timeoutSec: 5
            signalOnStop: SIGINT
            retryPolicy: {limit: 1, intervalSec: 2, maxIntervalSec: 4, exitCode: [1]}
            continueOn: {failure: true, exitCode: [2], markSuccess: true}
            precondition: "test -d /"
          - name: b
            depends: a
            command: echo
            container:
              image: alpine
              pullPolicy: never
              keepContainer: true
              workingDir: /w
              waitFor: healthy
              logPattern: ready
              restartPolicy: always
              healthcheck: {test: [CMD, x], startPeriod: 5s}
        """
    ).dag
    assert (
        dag.max_active_steps,
        dag.timeout_sec,
        dag.max_clean_up_time_sec,
        dag.max_output_size,
    ) == (2, 60, 3, 100)
    assert (dag.delay_sec, dag.working_dir) == (1, "/tmp")
    assert dag.handler_on.failure.run == "echo failed"
    assert dag.handler_on.abort.run == "echo cancelled"
    a, b = dag.steps
    assert (a.working_dir, a.timeout_sec, a.signal_on_stop) == ("/var", 5, "SIGINT")
    assert (
        a.retry_policy.interval_sec,
        a.retry_policy.max_interval_sec,
        a.retry_policy.exit_code,
    ) == (2, 4, (1,))
    assert (a.continue_on.failed, a.continue_on.exit_code, a.continue_on.mark_success) == (
        True,
        (2,),
        True,
    )
    assert a.preconditions[0].condition == "test -d /"
    c = b.container
    assert (c.pull_policy, c.keep_container, c.working_dir, c.wait_for) == (
        "never",
        True,
        "/w",
        "healthy",
    )
    assert (c.log_pattern, c.restart_policy, c.healthcheck.start_period) == (
        "ready",
        "always",
        "5s",
    )


@pytest.mark.parametrize(
    "key",
    [
        "schedule: '0 * * * *'",
        "tags: [a]",
        "group: g",
        "queue: q",
        "hist_retention_days: 3",
        "mail_on: {failure: true}",
        "histRetentionDays: 3",
        "max_active_runs: 1",
        "labels: [x]",
    ],
)
def test_server_only_keys_load_with_one_warning(key):
    loaded = load_text(key + "\nsteps: [{run: echo}]\n")
    (warning,) = loaded.warnings
    assert warning.severity == "warning"
    assert "only used by Dagu's server" in warning.message
    assert str(warning).startswith("dag.yaml:1:1: warning: ")


def test_step_server_only_key_warns():
    loaded = load_text("steps:\n  - run: echo\n    mail_on_error: true\n")
    assert [w.path for w in loaded.warnings] == ["steps[0].mail_on_error"]


def test_wait_handler_warns():
    loaded = load_text("handler_on: {wait: {run: echo}}\nsteps: [{run: echo}]\n")
    assert "never run in dagbox" in loaded.warnings[0].message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("steps:\n  - foreach: {items: [a]}\n", "steps[0].foreach"),
        ("ssh: {host: h}\nsteps: [{run: x}]\n", "ssh"),
    ],
)
def test_keys_that_change_what_runs_are_errors(text, key):
    issue = one_problem(text)
    assert issue.path == key
    assert "not supported by dagbox" in issue.message


def test_both_spellings_in_one_mapping_is_an_error():
    issue = one_problem("steps:\n  - run: x\n    timeout_sec: 1\n    timeoutSec: 2\n")
    assert (issue.path, issue.line) == ("steps[0].timeoutSec", 4)
    assert "same key" in issue.message


def test_capitalised_keys_are_not_aliases():
    issue = one_problem("Steps: [{run: x}]\nsteps: [{run: y}]\n")
    assert 'unknown key "Steps"' in issue.message


def test_eval_is_its_own_key_not_a_spelling_of_condition():
    """Dagu 2.x: eval is expanded by a shell; condition is compared as text."""
    dag = load_text(
        "steps:\n  - run: x\n    preconditions: [{eval: '$(date)', expected: 're:.+'}]\n"
    ).dag
    condition = dag.steps[0].preconditions[0]
    assert (condition.eval, condition.condition) == ("$(date)", "")


def test_a_container_env_reference_the_dag_does_not_define_is_warned_about():
    loaded = load_text(
        """
params: [MODEL=x]
env:
  - OPENAI_API_KEY: ${OPENAI_API_KEY}
steps:
  - id: a
    output: OUT
    container:
      image: alpine
      env:
        - ANTHROPIC_API_KEY=${ANTHROPIC_API_KEY}
        - OPENAI_API_KEY=${OPENAI_API_KEY}
        - FROM_PARAM=${MODEL} $DAG_RUN_ID ${params.MODEL} ${OUT.field}
        - EARLIER=${FROM_PARAM}
        - ESCAPED=\\${LATER}
    run: echo hi
""".lstrip()
    )
    (warning,) = [w for w in loaded.warnings if w.severity == "warning"]
    assert str(warning) == (
        "dag.yaml:10:11: warning: steps[0].container.env[0]: ${ANTHROPIC_API_KEY} is not "
        "defined in this DAG, so the container gets it as text; to pass dagbox's own "
        'ANTHROPIC_API_KEY, add "ANTHROPIC_API_KEY: ${ANTHROPIC_API_KEY}" to the DAG\'s env'
    )
