"""Dagu 2.x semantics, learnt from Dagu's conformance fixtures and Go tests (nothing copied):
each test is a small DAG that meant something else in dagbox before."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from dagbox.spec import load
from tests.conftest import load_text, problems
from tests.helpers import DAGBOX, run_text


def test_a_shebang_script_runs_by_its_interpreter_under_the_dags_shell(tmp_path):
    """The DAG's shell (even ``sh -c``) or the default shell does not stop a ``#!`` line;
    a step's own shell does. ``#!env sh`` finds ``env`` in the step's PATH."""
    ran = run_text(
        tmp_path,
        """
        shell: [sh, -c]
        steps:
          - id: absolute
            run: |
              #!/bin/sh
              echo absolute
          - id: from_path
            run: |
              #!env sh
              echo from path
          - id: python
            script: |
              #!/usr/bin/env python3
              print("python")
          - id: own_shell
            shell: sh
            run: |
              #!/bin/false
              echo own shell
          - id: blank_first
            run: "\\n#!/bin/false\\necho blank first\\n"
          - id: no_shebang
            run: |
              echo plain
              echo script
          - id: missing
            run: |
              #!no-such-interpreter-xyz
              echo never
        """,
    )
    assert ran.stdout("absolute") == "absolute\n"
    assert ran.stdout("from_path") == "from path\n"
    assert ran.stdout("python") == "python\n"
    assert ran.stdout("own_shell") == "own shell\n"
    assert ran.stdout("blank_first") == "blank first\n"
    assert ran.stdout("no_shebang") == "plain\nscript\n"
    assert ran.status("missing") == "failed"
    assert "no-such-interpreter-xyz" in ran.error("missing")


RUN_LISTS = """
        params: [WHO=me]
        steps:
          - id: in_turn
            run:
              - mkdir -p sub && cd sub && touch marker && export LOCAL=changed
              - test -f sub/marker && test ! -f marker && test "${LOCAL-unset}" = unset
              - echo one; echo two >&2
              - echo three  # a comment stays a comment
          - id: stops
            run:
              - echo first > first.txt
              - exit 3
              - echo third > third.txt
          - id: errexit_each
            run:
              - false; echo "not reached"
              - echo never
          - id: one
            run: ["echo just one"]
          - id: colon
            run:
              - echo a: b
          - id: values
            env: [GREETING=hello world]
            run:
              - echo "${params.WHO}"
              - echo "$GREETING"
        """


def test_a_run_list_is_several_commands_each_through_the_shell(tmp_path):
    """Dagu >= 1.29: each entry through the shell, in order, a fresh shell each time
    (cd and export do not carry over), stopping at the first failure with its exit code;
    the shell's -e holds inside each entry."""
    ran = run_text(tmp_path, RUN_LISTS)
    assert ran.status("in_turn") == "succeeded"
    assert ran.stdout("in_turn") == "one\nthree\n"
    assert ran.status("stops") == "failed"
    assert ran.step("stops").exit_code == 3
    assert (tmp_path / "first.txt").exists() and not (tmp_path / "third.txt").exists()
    assert ran.status("errexit_each") == "failed"
    assert "not reached" not in ran.stdout("errexit_each")
    assert ran.stdout("one") == "just one\n"
    assert ran.stdout("colon") == "a: b\n"
    assert ran.stdout("values") == "me\nhello world\n"


def test_shell_direct_and_exec_run_a_program_without_a_shell(tmp_path):
    ran = run_text(
        tmp_path,
        """
        params: [WHO=a b]
        env: [X=ex]
        steps:
          - id: direct
            shell: direct
            run: printf "[%s]" "${params.WHO}" $X *
          - id: direct_list
            shell: direct
            run:
              - printf "[%s]" one
              - printf "[%s]" "${params.WHO}" $X
          - id: exec
            exec:
              command: printf
              args: ["[%s]", "a;b", 2]
          - id: exec_action
            action: exec
            with: {command: printf, args: ["[%s]", "$X"]}
        """,
    )
    # Words are values: ${...} and $X resolve; no globbing, no word splitting.
    assert ran.stdout("direct") == "[a b][ex][*]"
    assert ran.stdout("direct_list") == "[one][a b][ex]"
    assert ran.stdout("exec") == "[a;b][2]"
    assert ran.stdout("exec_action") == "[ex]"


def test_shell_style_expressions_in_env_values(tmp_path):
    """As Dagu evaluates them: a name the env has gets the shell's operators; an unknown
    name, or one the expression would assign, stays as written."""
    ran = run_text(
        tmp_path,
        r"""
        env:
          - FULL: archive/v1/build.tar.gz
          - NOTHING: ""
          - CUT: "${FULL:0:7}_${FULL: -2}"
          - DEFAULTS: ${NOTHING:-none} ${NOTHING-unset} ${FULL:+set} [${NOTHING:+set}]
          - PATTERNS: ${FULL#*/} ${FULL##*/} ${FULL%.*} ${FULL%%/*} ${#FULL}
          - NESTED: ${NOTHING:-${FULL%%/*}}
          - KEPT: ${UNKNOWN_NAME:-x} ${NOTHING:=x} \${FULL:0:3}
        steps:
          - id: show
            env:
              - STEP: ${CUT:0:4}
            run: printf '%s\n' "$CUT" "$DEFAULTS" "$PATTERNS" "$NESTED" "$KEPT" "$STEP"
        """,
    )
    assert ran.stdout("show").splitlines() == [
        "archive_gz",
        "none  set []",
        "v1/build.tar.gz build.tar.gz archive/v1/build.tar archive 23",
        "archive",
        "${UNKNOWN_NAME:-x} ${NOTHING:=x} ${FULL:0:3}",
        "arch",
    ]


def test_script_bodies_get_params_as_run_scripts_do(tmp_path):
    """``script:`` is Dagu's older spelling of a multi-line ``run:``: the same references
    resolve in it (positional ones too, not inside single quotes), for an interpreter too."""
    ran = run_text(
        tmp_path,
        """
        params: "first second"
        steps:
          - id: shell
            script: |
              echo "${params.1} $2"
              echo a b | awk '{print $2}'
          - id: python
            command: python3
            script: |
              print("$1")
        """,
    )
    assert ran.stdout("shell") == "first second\nb\n"
    assert ran.stdout("python") == "first\n"


def test_stdout_and_stderr_files(tmp_path):
    """``stdout:``/``stderr:`` get a copy of the step's streams, appended to (each retry
    adds), relative to the step's working directory, secrets masked as in the logs; the
    log files still get everything."""
    (tmp_path / "work").mkdir()
    (tmp_path / "out.txt").write_text("before\n")
    ran = run_text(
        tmp_path,
        """
        env: [API_TOKEN=s3cr3t-value]
        steps:
          - id: both
            run: echo out; echo err >&2; echo "$API_TOKEN"
            stdout: out.txt
            stderr: ${params.DIR}/err.txt
          - id: same_folder
            working_dir: work
            run: echo one; echo two >&2
            stdout: out.txt
            stderr: ${params.DIR}/err.txt
          - id: retried
            run: echo try; exit 1
            stdout: retried.txt
            retry_policy: {limit: 1}
          - id: cannot
            run: echo never
            stdout: no-such-folder/out.txt
        params: [DIR=.]
        """,
    )
    assert (tmp_path / "out.txt").read_text() == "before\nout\n***\n"
    assert (tmp_path / "err.txt").read_text() == "err\n"
    assert ran.stdout("both") == "out\n***\n"
    assert (tmp_path / "work" / "out.txt").read_text() == "one\n"
    assert (tmp_path / "work" / "err.txt").read_text() == "two\n"
    found = _problems(
        """
        steps:
          - {run: 'true', stdout: a.txt, stderr: a.txt}
          - {run: 'true', stdout: {artifact: b.txt}, stderr: {artifact: b.txt}}
        """
    )
    assert found == [
        "steps[0].stderr: stdout and stderr cannot be the same file 'a.txt'",
        "steps[1].stderr: stdout and stderr cannot be the same file 'b.txt'",
    ]
    assert (tmp_path / "retried.txt").read_text() == "try\ntry\n"
    assert ran.status("cannot") == "failed"
    assert "cannot open stdout file" in ran.error("cannot")


def test_consts_resolve_in_order_and_everywhere_params_do(tmp_path):
    ran = run_text(
        tmp_path,
        """
        consts:
          - host: example.test
          - port: 8080
          - secure: true
          - url: https://${consts.host}:${consts.port}/${consts.secure}
          - early: ${consts.later}
          - later: x
        env: ["URL=${consts.url}"]
        steps:
          - id: show
            run: printf '%s\\n' "${consts.url}" "$URL" '${consts.nope}' '${consts.url.deeper}' '${consts.early}'
        """,
    )
    assert ran.status("show") == "succeeded", ran.error("show")
    assert ran.stdout("show").splitlines() == [
        "https://example.test:8080/true",
        "https://example.test:8080/true",
        "${consts.nope}",
        "${consts.url.deeper}",
        "${consts.later}",
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("consts: {a: b}", "consts must be a list"),
        ("consts: [a]", "single-entry mappings"),
        ("consts: [{a: 1, b: 2}]", "exactly one key"),
        ("consts: [{1a: x}]", "is invalid"),
        ("consts: [{a: {b: c}}]", "literal string, number, or boolean"),
        ("consts: [{a: .nan}]", "finite"),
    ],
)
def test_consts_forms_dagu_refuses(text, error):
    found = [str(p) for p in problems(text + "\nsteps: [{run: 'true'}]\n")]
    assert any(error in p for p in found), found


def test_a_const_that_refers_to_what_it_cannot_is_left_with_a_warning():
    loaded = load_text("consts:\n  - a: ${consts.a}\n  - b: ${params.x}\nsteps: [{run: 'true'}]\n")
    said = [str(w) for w in loaded.warnings]
    assert any("${consts.a} was left unchanged in consts.a" in w for w in said), said
    assert any("${params.x} was left unchanged in consts.b" in w for w in said), said


def test_preconditions_run_in_the_steps_working_dir_and_values_run_nothing(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "here.flag").write_text("")
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: command
            working_dir: sub
            preconditions: test -f here.flag
            run: echo ran
          - id: evaluated
            working_dir: sub
            preconditions: [{eval: "$(ls)", expected: here.flag}]
            run: echo ran
          - id: value
            preconditions:
              - condition: "$(touch touched; echo x)"
                expected: "$(touch touched; echo x)"
            run: echo ran
        """,
    )
    assert [ran.status(s) for s in ("command", "evaluated", "value")] == ["succeeded"] * 3
    assert not (tmp_path / "touched").exists()


def test_params_eval_and_literal_backticks_elsewhere(tmp_path, monkeypatch):
    """Dagu 2.x: a param's eval: is expanded by a shell when the run starts, in order, each
    seeing the params before it and dagbox's environment; a failure falls back to the
    default. Backticks and $(...) anywhere else in env values are text."""
    monkeypatch.setenv("FROM_HOST", "host")
    ran = run_text(
        tmp_path,
        """
        params:
          - name: env
            default: prod
          - name: day
            eval: "`printf 2026-12-01`"
          - name: service
            eval: $(printf '%s-%s' '${params.env}' "$FROM_HOST")
          - name: fallback
            eval: "`no-such-command-xyz`"
            default: plan-b
          - name: given
            eval: "`printf never`"
        env:
          - LITERAL: "`printf ran`"
          - ALSO: $(printf ran)
        steps:
          - id: show
            env: ["STEP=`printf ran`"]
            run: printf '%s\\n' '${params.day}' '${params.service}' '${params.fallback}' '${params.given}' "$LITERAL" "$ALSO" "$STEP"
        """,
        params={"given": "from-cli"},
    )
    assert ran.stdout("show").splitlines() == [
        "2026-12-01",
        "prod-host",
        "plan-b",
        "from-cli",
        "`printf ran`",
        "$(printf ran)",
        "`printf ran`",
    ]
    assert ran.record["params"]["day"] == "2026-12-01"


def test_a_params_eval_that_fails_without_a_default_fails_the_run(tmp_path):
    ran = run_text(
        tmp_path,
        """
        params:
          - {name: day, eval: "`exit 3`"}
        steps:
          - {id: never, run: touch never}
        """,
    )
    assert ran.result.status == "failed"
    assert 'parameter "day" eval failed' in ran.result.error
    assert not (tmp_path / "never").exists()


OUTPUTS = """
        steps:
          - id: produce
            outputs:
              - name: version
              - name: notes
              - {name: meta, type: json}
            run:
              - printf 'version=v1.2=3\\n' >> "$DAGU_OUTPUT_FILE"
              - printf 'notes<<END\\nline one\\nline two\\nEND\\n' >> "$DAGU_OUTPUT_FILE"
              - 'printf ''meta={"tag": "x"}\\n'' >> "$DAGU_OUTPUT_FILE"'
          - id: consume
            depends: produce
            run: |  # a value with a line break needs a script: a one-line command refuses it
              printf '%s|%s|%s\\n' '${steps.produce.outputs.version}' '${steps.produce.outputs.notes}' '${steps.produce.outputs.meta}'
          - id: unrelated
            run: printf '%s\\n' '${steps.produce.outputs.version}'
          - id: undeclared
            run: echo x=1 >> "$DAGU_OUTPUT_FILE"
          - id: missing
            outputs: [{name: never}]
            run: echo forgot
          - id: failed
            outputs: [{name: leaked}]
            continue_on: failed
            run: [echo leaked=yes >> "$DAGU_OUTPUT_FILE", "false"]
          - id: after_failed
            depends: failed
            run: printf '%s\\n' '${steps.failed.outputs.leaked}'
          - id: bad_json
            outputs: [{name: doc, type: json}]
            run: echo 'doc={nope' >> "$DAGU_OUTPUT_FILE"
        """


def test_declared_outputs(tmp_path):
    """Dagu 2.x: NAME=value and NAME<<DELIM records in DAGU_OUTPUT_FILE, read after a
    success; ${steps.ID.outputs.NAME} in steps that depend on the producer; every rule
    broken fails the step."""
    ran = run_text(tmp_path, OUTPUTS)
    assert ran.stdout("consume") == 'v1.2=3|line one\nline two|{"tag": "x"}\n'
    assert ran.stdout("unrelated") == "${steps.produce.outputs.version}\n"
    assert 'undeclared step output "x"' in ran.error("undeclared")
    assert 'declared step output "never" was not emitted' in ran.error("missing")
    assert ran.stdout("after_failed") == "${steps.failed.outputs.leaked}\n"
    assert 'step output "doc" is not valid JSON' in ran.error("bad_json")
    assert not list((tmp_path / "home").glob("runs/*/*/outputs/*"))  # read, then removed


def test_declared_outputs_need_an_id_and_good_declarations():
    for text, error in [
        ("outputs: [{name: a}]\n    run: 'true'", "a step with outputs must define id"),
        ("id: s\n    outputs: []\n    run: 'true'", "non-empty sequence"),
        ("id: s\n    outputs: [{name: 1a}]\n    run: 'true'", "name must match"),
        ("id: s\n    outputs: [{name: a}, {name: a}]\n    run: 'true'", "duplicate output name"),
        ("id: s\n    outputs: [{name: a, type: int}]\n    run: 'true'", "type must be"),
        ("id: s\n    outputs: [{name: a, other: 1}]\n    run: 'true'", 'unknown field "other"'),
    ]:
        found = [str(p) for p in problems("steps:\n  - " + text + "\n")]
        assert any(error in p for p in found), (text, found)


def test_context_params_payload_and_step_properties(tmp_path):
    """Never silently ignored: ${context.*} and its older spellings, ${params}, and a
    dependency's ${ID.stdout}, ${ID.stderr}, ${ID.exit_code} resolve as in Dagu; what has no
    value here (a sub-DAG's root, an unknown field, a step that is not upstream) stays."""
    ran = run_text(
        tmp_path,
        """
        name: ctx
        params: [ENV=prod, TAG=v1]
        env: ["RUN_ENV=${context.run.id}"]
        handler_on:
          exit:
            run: printf '%s\\n' '${context.run.status}' '${context.paths.step_stdout_file}'
        steps:
          - id: first
            run: echo out; echo err >&2; exit 3
            continue_on: failed
          - id: show
            depends: first
            run: |
              printf '%s\\n' '${context.dag.name}' '${dag.name}' '${context.run.id}' "$RUN_ENV"
              printf '%s\\n' '${run.id}' '${context.step.id}' '${context.step.name}' '${step.name}'
              printf '%s\\n' '${context.trigger.type}' '${context.run.root_id}' '${context.run.foo}'
              printf '%s\\n' '${params}' "$DAG_PARAMS_JSON" '${first.exit_code}' '${first.exitCode}'
              cat '${first.stdout}' '${first.stderr}'
              test -f '${context.paths.log_file}' && test -d '${context.paths.work_dir}'
              test -f '${context.paths.step_stdout_file}'
              case '${context.attempt.started_at}' in ????-??-??T??:??:??Z) ;; *) exit 9 ;; esac
              test '${context.attempt.id}' != '${context.run.id}'
          - id: unrelated
            run: printf '%s\\n' '${first.exit_code}'
        """,
        run_id="r1",
    )
    assert ran.status("show") == "succeeded", ran.error("show")
    assert ran.stdout("show").splitlines() == [
        "ctx", "ctx", "r1", "r1",
        "r1", "show", "show", "show",
        "manual", "${context.run.root_id}", "${context.run.foo}",
        '{"ENV":"prod","TAG":"v1"}', '{"ENV":"prod","TAG":"v1"}', "3", "3",
        "out", "err",
    ]  # fmt: skip
    assert ran.stdout("unrelated") == "${first.exit_code}\n"
    exit_handler = ran.result.handlers["exit"]
    assert Path(exit_handler.stdout_file).read_text() == (
        "partially_succeeded\n${context.paths.step_stdout_file}\n"
    )


def test_an_unknown_context_field_is_a_warning():
    loaded = load_text("steps:\n  - run: echo '${context.run.foo}' '${context.run.id}'\n")
    said = [str(w) for w in loaded.warnings if w.severity == "warning"]
    assert any("${context.run.foo} was left unchanged" in w for w in said), said
    assert not any("context.run.id" in w for w in said), said


def test_repeat_policy(tmp_path):
    """Dagu's repeat modes: until a condition holds (an agent loop until the tests pass),
    while it holds, while or until an exit code, while it succeeds, capped by limit; a
    retry comes before a repetition; the last execution decides the status."""
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: until_value
            run: echo x >> count; wc -l < count | tr -d ' '
            output: COUNT
            repeat_policy: {condition: "$COUNT", expected: "3"}
          - id: until_command
            run: echo y >> tries
            repeat_policy: {repeat: until, condition: "test $(wc -l < tries) -ge 2"}
          - id: while_exit_code
            run: echo z >> codes; test $(wc -l < codes) -ge 3
            repeat_policy: {repeat: while, exit_code: [1]}
          - id: while_success
            run: echo w >> ok
            repeat_policy: {repeat: true, limit: 4, interval_sec: 0}
          - id: retried_then_repeated
            run: echo r >> mixed; test $(wc -l < mixed) -ne 1
            retry_policy: {limit: 1}
            repeat_policy: {repeat: true, limit: 2}
        """,
    )
    assert ran.stdout("until_value") == "3\n"
    assert ran.step("until_value").attempts == 3
    assert (tmp_path / "tries").read_text() == "y\ny\n"
    assert ran.status("while_exit_code") == "succeeded"
    assert (tmp_path / "codes").read_text().count("z") == 3
    assert (tmp_path / "ok").read_text().count("w") == 4
    assert (tmp_path / "mixed").read_text().count("r") == 3  # fail, retry ok, repeat ok


def test_repeat_policy_forms_dagu_refuses():
    for text, error in [
        ("repeat_policy: {repeat: sometimes}", 'repeat must be true, false, "while" or "until"'),
        ("repeat_policy: {repeat: while}", "needs a condition or an exit_code"),
        ("repeat_policy: {repeat: true, expected: x}", "expected needs a condition"),
        ("repeat_policy: {repeat: true, backoff: 0.5}", "backoff must be greater than 1.0"),
    ]:
        found = [str(p) for p in problems("steps:\n  - run: x\n    " + text + "\n")]
        assert any(error in p for p in found), (text, found)


def test_dotenv_files_and_secrets(tmp_path, monkeypatch):
    """dotenv: .env first, then the listed files (later wins), missing ones skipped;
    secrets from dagbox's environment and from a file, masked in every output, the source
    variable of an env secret kept from the steps."""
    monkeypatch.setenv("SOURCE_TOKEN", "from-the-host-123")
    (tmp_path / ".env").write_text("ONE=1\nTWO=2\n")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "prod.env").write_text("# comment\nexport TWO='two'\nTHREE=\"3 3\"\n")
    (tmp_path / "key.txt").write_text("file-secret-456\n")
    ran = run_text(
        tmp_path,
        """
        env: [STAGE=prod]
        dotenv: ["conf/${STAGE}.env", missing.env]
        secrets:
          - {name: API_TOKEN, provider: env, key: SOURCE_TOKEN}
          - {name: FILE_KEY, provider: file, key: key.txt}
        steps:
          - id: show
            run: |
              echo "$ONE $TWO $THREE"
              echo "$API_TOKEN ${env.API_TOKEN} [${SOURCE_TOKEN:-}] $FILE_KEY"
        """,
    )
    assert ran.stdout("show") == "1 two 3 3\n*** *** [] ***\n"


def test_a_secret_that_cannot_be_read_fails_the_run_before_any_step(tmp_path):
    ran = run_text(
        tmp_path,
        """
        secrets: [{name: TOKEN, provider: env, key: NOT_SET_ANYWHERE_XYZ}]
        steps:
          - {id: never, run: touch never}
        """,
    )
    assert ran.result.status == "failed"
    assert "NOT_SET_ANYWHERE_XYZ is not set" in ran.result.error
    assert not (tmp_path / "never").exists()


def test_secrets_forms_dagu_refuses():
    for name, error in [
        ("DAG_RUN_ID", "collides"),
        ("DAG_PUSHBACK", "collides"),
        ("DAGU_CUSTOM", "must not start with DAGU_"),
    ]:
        text = f"secrets: [{{name: {name}, provider: env, key: X}}]\nsteps: [{{run: 'true'}}]\n"
        found = [str(p) for p in problems(text)]
        assert any(error in p and name in p for p in found), found
    found = [
        str(p)
        for p in problems("secrets: [{name: A, provider: vault, key: x}]\nsteps: [{run: x}]\n")
    ]
    assert any('provider "vault" is not supported' in p for p in found), found


def test_files_that_rely_on_a_dagu_1x_meaning_are_warned_about(tmp_path):
    (tmp_path / "other.yaml").write_text("steps: [{run: 'true'}]\n")
    dag = tmp_path / "old.yaml"
    dag.write_text(
        "steps:\n"
        "  - name: a\n    command: echo a\n    continueOn: {failure: true}\n"
        "  - name: b\n    run: other\n"
    )
    from dagbox.spec import load

    loaded = load(dag)
    said = [str(w) for w in loaded.warnings]
    assert any("add type: chain to keep the order" in w for w in said), said
    # Dagu 1.x's run: NAME called the DAG file beside it: dagbox calls it too, and says so.
    assert any("run: other calls the sub-DAG other, as Dagu 1.x did" in w for w in said), said
    assert loaded.dag.steps[1].call == "other" and "other" in loaded.dags
    dag.write_text("steps:\n  - {name: b, command: other}\n")  # 1.x's command: a command
    assert load(dag).dag.steps[0].call is None
    dag.write_text(
        "type: chain\nsteps:\n  - {name: a, command: echo, continueOn: {failure: true}}\n  - {name: b, command: echo}\n"
    )
    assert not [str(w) for w in load(dag).warnings if "chain" in str(w)]
    # The same file in 2.x spelling means what it says: no warning.
    dag.write_text("steps:\n  - {name: a, run: echo}\n  - {name: b, run: echo}\n")
    assert load(dag).warnings == []


def test_defaults_apply_to_steps_that_do_not_set_the_key(tmp_path):
    ran = run_text(
        tmp_path,
        """
        defaults:
          continue_on: failed
          retry_policy: {limit: 2}
          env: [WHO=default, ONLY_DEFAULT=yes]
          preconditions: "test -d ."
        steps:
          - id: flaky
            run: echo x >> tries; exit 1
          - id: own
            retry_policy: {limit: 0}
            env: {WHO: step}
            preconditions: ["test -d /"]
            run: echo "$WHO $ONLY_DEFAULT"; echo y >> once; exit 1
          - id: after
            depends: [flaky, own]
            run: echo ran
        """,
    )
    assert (tmp_path / "tries").read_text() == "x\n" * 3  # the default retry_policy
    assert (tmp_path / "once").read_text() == "y\n"  # its own limit: 0 wins
    assert ran.stdout("own") == "step yes\n"
    assert ran.status("after") == "succeeded"  # continue_on: failed from the defaults


def test_a_default_dagu_does_not_allow_is_an_error():
    found = [str(p) for p in problems("defaults: {run: x}\nsteps: [{run: 'true'}]\n")]
    assert any('"run" cannot be a default' in p for p in found), found


def test_a_shells_c_carrier_must_stand_alone_and_last():
    for shell in ("[sh, -xc]", "[bash, -c, -e]", "[sh, -c, -c]", "'sh -cecho'"):
        found = [str(p) for p in problems(f"steps:\n  - run: echo\n    shell: {shell}\n")]
        assert any("-c must be a separate argument" in p for p in found), (shell, found)
    for shell in ("[sh, -c]", "[bash, -e, -c]", "bash", "[python3, -c]"):
        load_text(f"steps:\n  - run: echo\n    shell: {shell}\n")


def test_a_value_that_puts_a_line_break_in_a_one_line_command_fails_it(tmp_path):
    ran = run_text(
        tmp_path,
        """
        env:
          - T: |-
              echo a > a.txt
              echo b
        steps:
          - {id: s, run: "${env.T}"}
        """,
    )
    assert ran.status("s") == "failed"
    assert "line break" in ran.error("s")
    assert not (tmp_path / "a.txt").exists()


def test_the_dags_env_cannot_shadow_a_run_variable_and_a_steps_env_can(tmp_path):
    ran = run_text(
        tmp_path,
        """
        env: [DAG_RUN_ID=root-shadow]
        steps:
          - id: a
            env: ["COPY=${env.DAG_RUN_ID} $DAG_RUN_STEP_NAME"]
            run: echo "$COPY $DAG_RUN_ID"
          - id: b
            env: [DAG_RUN_ID=step-shadow]
            run: echo "$DAG_RUN_ID"
        """,
        run_id="r1",
    )
    assert ran.stdout("a") == "r1 a r1\n"
    assert ran.stdout("b") == "step-shadow\n"


def test_a_precondition_of_a_step_whose_working_dir_is_not_there_yet(tmp_path):
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: s
            working_dir: made/by/dagbox
            preconditions: [{eval: "$(pwd)", expected: "re:made/by/dagbox$"}]
            run: pwd
        """,
    )
    assert ran.status("s") == "succeeded", ran.error("s")


def test_the_object_form_of_output(tmp_path):
    """Dagu 2.x: output: KEY -> a literal, {value}, or {from: stdout|stderr|file, path,
    decode}; dependents read ${ID.output.KEY} and its fields."""
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "prod.json").write_text('{"passed": 41, "failed": 1}')
    ran = run_text(
        tmp_path,
        """
        params: [ENV=prod]
        steps:
          - id: produce
            run: |
              echo '{"tag": "v2"}'; echo warn >&2
            output:
              label: env-${params.ENV}
              nested: {value: {env: "${params.ENV}", n: 3}}
              image: {from: stdout, decode: json}
              said: {from: stderr}
              report: {from: file, path: "reports/${params.ENV}.json", decode: json}
          - id: consume
            depends: produce
            run: |
              printf '%s\\n' '${produce.output.label}' '${produce.output.nested.env}' '${produce.output.image.tag}'
              printf '%s\\n' '${produce.output.said}' '${produce.output.report.failed}' '${produce.output.nope}'
          - id: missing
            output: {x: {from: file, path: nowhere.txt}}
            run: "true"
        """,
    )
    assert ran.stdout("consume").splitlines() == [
        "env-prod", "prod", "v2", "warn", "1", "${produce.output.nope}",
    ]  # fmt: skip
    assert ran.status("missing") == "failed"
    assert "output x: cannot read" in ran.error("missing")


def test_the_object_form_of_output_is_checked():
    for text, error in [
        ("id: s\n    output: {a: {value: 1, from: stdout}}", '"value" and "from" cannot'),
        ("id: s\n    output: {a: {from: file}}", '"path" goes with "from: file"'),
        ("id: s\n    output: {a: {from: pipe}}", "from must be stdout, stderr or file"),
        ("id: s\n    output: {a: {from: stdout, decode: xml}}", "decode must be"),
    ]:
        found = [str(p) for p in problems("steps:\n  - run: x\n    " + text + "\n")]
        assert any(error in p for p in found), (text, found)


TYPED = """\
params:
  - {name: environment, type: string, required: true, enum: [dev, prod]}
  - {name: replicas, type: integer, minimum: 1, maximum: 5, default: 2}
  - {name: ratio, type: number, default: 1.25}
  - {name: enabled, type: boolean, default: false}
  - {name: tag, type: string, pattern: "^v[0-9]+$", default: v1}
steps:
  - run: echo "${params.environment} ${params.replicas} ${params.ratio} ${params.enabled} ${params.tag}"
"""


def test_typed_params_check_the_values_a_run_gets(tmp_path):
    dag = tmp_path / "typed.yaml"
    dag.write_text(TYPED)
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}

    def run(*params: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*DAGBOX, "run", str(dag), "--", *params],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip

    ok = run("environment=prod", "replicas=3")
    assert ok.returncode == 0, ok.stderr
    assert "prod 3 1.25 false v1" in ok.stdout
    for params, said in [
        ((), "param environment is required"),
        (("environment=staging",), "must be one of dev, prod"),
        (("environment=dev", "replicas=x"), "must be an integer"),
        (("environment=dev", "replicas=9"), "must be <= 5"),
        (("environment=dev", "enabled=yes"), "must be true or false"),
        (("environment=dev", "tag=latest"), "must match"),
    ]:
        done = run(*params)
        assert done.returncode == 2, (params, done.stderr)
        assert said in done.stderr, (params, done.stderr)


def test_a_typed_params_default_must_fit_its_declaration():
    found = [
        str(p)
        for p in problems(
            "params:\n  - {name: n, type: integer, default: many}\nsteps: [{run: 'true'}]\n"
        )
    ]
    assert any("the default must be an integer" in p for p in found), found
    found = [
        str(p) for p in problems("params:\n  - {name: n, type: decimal}\nsteps: [{run: 'true'}]\n")
    ]
    assert any("type must be one of string, integer, number, boolean" in p for p in found), found


def test_handlers_see_no_step_outputs_and_an_output_object_needs_no_id(tmp_path):
    """Dagu: ${steps.*} has no value in a handler; an output object is published by name
    when the step has no id."""
    ran = run_text(
        tmp_path,
        """
        handler_on:
          exit: {run: "printf '%s\\n' '${steps.build.outputs.image}'"}
        steps:
          - id: build
            outputs: [{name: image}]
            run: echo image=v1 >> "$DAGU_OUTPUT_FILE"
          - name: named
            depends: build
            run: "true"
            output: {result: {value: x}}
          - id: reads
            depends: named
            run: echo '${named.output.result}'
        """,
    )
    assert Path(ran.result.handlers["exit"].stdout_file).read_text() == (
        "${steps.build.outputs.image}\n"
    )
    assert ran.stdout("reads") == "x\n"


def test_a_run_word_too_long_for_a_file_name_is_no_dag(tmp_path):
    """The 1.x trap check looked for NAME.yaml and raised on a name too long for a file."""
    load_text("steps:\n  - run: " + "1" * 300 + "\n")


def test_step_output_references_that_can_never_resolve_are_warned_about():
    loaded = load_text(
        """
env: ["EARLY=${steps.build.outputs.image}"]
handler_on:
  exit: {run: "echo '${steps.build.outputs.image}'"}
steps:
  - id: build
    outputs: [{name: image}]
    run: echo "${steps.build.outputs.image}"
  - id: ok
    depends: build
    run: echo "${steps.build.outputs.image}" '\\${steps.nope.outputs.x}'
  - id: later
    depends: ok
    run: echo "${steps.build.outputs.image}"
  - id: bad
    run: echo "${steps.build.outputs.image} ${steps.nope.outputs.x} ${steps.build.outputs.tag}"
"""
    )
    said = [str(w) for w in loaded.warnings]
    assert sorted(w.rsplit("(", 1)[-1].rstrip(")") for w in said) == [
        "missing_dependency",
        "namespace_unavailable",
        "namespace_unavailable",
        "self_reference",
        "unknown_output_name",
        "unknown_step_id",
    ], said
    assert not any("steps.build.outputs.image" in w and "steps[1]" in w for w in said), said


def test_review_findings(tmp_path, monkeypatch):
    """What a review of this work found, each fixed: a precondition's helper shell gets
    neither dotted reference names nor an env secret's source; a file secret is masked
    without its last newline; a shell-style value is not expanded twice; defaults reach
    handlers, map-form and bare steps; stdout: files in a working_dir not made yet."""
    monkeypatch.setenv("SRC_VAR", "source-value-789")
    monkeypatch.setenv("PW", "a$HOME-${USER}")
    (tmp_path / "key.txt").write_text("hunter2secret\n")
    ran = run_text(
        tmp_path,
        r"""
        secrets:
          - {name: API, provider: env, key: SRC_VAR}
          - {name: FILEKEY, provider: file, key: key.txt}
        env: ["TWICE=${PW:-none}"]
        defaults: {env: [D=from-defaults]}
        handler_on:
          exit: {run: 'echo "exit $D"'}
        steps:
          - id: probe
            preconditions: "! tr '\\0' '\\n' < /proc/$$/environ | grep -e '^SRC_VAR=' -e '^context\\.' -e '^dag\\.name='"
            run: printf '[%s] %s %s\n' $FILEKEY "$TWICE" "$D"
          - id: files
            working_dir: not/yet
            stdout: out.txt
            run: echo to-file
        """,
    )
    assert ran.status("probe") == "succeeded", ran.error("probe")
    assert ran.stdout("probe") == "[***] a$HOME-${USER} from-defaults\n"
    assert (tmp_path / "not" / "yet" / "out.txt").read_text() == "to-file\n"
    assert Path(ran.result.handlers["exit"].stdout_file).read_text() == "exit from-defaults\n"


def test_artifacts_folder_and_stream_artifacts(tmp_path):
    """A DAG that names $DAG_RUN_ARTIFACTS_DIR or writes ``stdout: {artifact}`` gets an
    artifacts folder (in the run's record, without ``artifacts.dir``); a stream artifact
    is a file inside it, its folders made, its name resolved; handlers get one too; a
    step that also has a stdout file gets both."""
    ran = run_text(
        tmp_path,
        """
        params: [environment=prod]
        steps:
          - id: write
            run: echo out; echo err >&2
            stdout: {artifact: "reports/${params.environment}/out.txt"}
            stderr: {artifact: err.txt}
          - id: names
            run: echo made > "$DAG_RUN_ARTIFACTS_DIR/named.txt"; echo "${context.paths.artifacts_dir}"
        handler_on:
          success:
            run: echo handled
            stdout: {artifact: handler.txt}
        """,
    )
    folder = tmp_path / "home" / "runs" / "dag" / "r1" / "artifacts"
    assert (folder / "reports" / "prod" / "out.txt").read_text() == "out\n"
    assert (folder / "err.txt").read_text() == "err\n"
    assert (folder / "named.txt").read_text() == "made\n"
    assert (folder / "handler.txt").read_text() == "handled\n"
    assert ran.stdout("names") == f"{folder}\n"
    assert folder.stat().st_mode & 0o7777 == 0o750  # only dagbox's user: no container here
    assert ran.stdout("write") == "out\n"  # the log still gets it


def test_artifacts_dir_is_laid_out_as_dagu_does(tmp_path, monkeypatch):
    """``artifacts: {dir}`` (relative to the DAG's folder, ``$VAR`` and ``~`` expanded)
    holds ``<dag>/dag-run_<UTC time>_<run id>/``; a dir alone, or a DAG that does not use
    them, turns nothing on."""
    monkeypatch.setenv("ARTS", "kept")
    run_text(
        tmp_path,
        """
        name: reports
        artifacts: {dir: $ARTS/here}
        steps:
          - run: echo both
            stdout: {artifact: a/b.txt}
          - run: echo file
            stdout: plain.txt
        """,
    )
    (found,) = (tmp_path / "kept" / "here" / "reports").glob("dag-run_*_r1/a/b.txt")
    assert found.read_text() == "both\n"
    assert found.parent.parent.name.startswith("dag-run_20")
    assert (tmp_path / "plain.txt").read_text() == "file\n"
    for text in ("steps:\n  - run: 'true'\n", "artifacts: {dir: off}\nsteps: [{run: 'true'}]\n"):
        plain = tmp_path / f"plain{len(text)}"
        plain.mkdir()
        run_text(plain, text)
        assert not (plain / "home" / "runs" / "dag" / "r1" / "artifacts").exists()
        assert not (plain / "off").exists()


def test_artifact_paths_that_leave_the_folder_are_refused(tmp_path):
    """At validate, with the field's place: absolute, ``..``, a folder, or an artifact
    with artifacts turned off; at run time, a value that makes one of them, or a symlink
    out of the folder, fails the step."""
    found = _problems(
        """
            artifacts: {enabled: false}
            steps:
              - {id: a, run: 'true', stdout: {artifact: /etc/x}}
              - {id: b, run: 'true', stderr: {artifact: ../x}}
              - {id: c, run: 'true', stdout: {artifact: ./}}
              - {id: d, run: 'true', stderr: {outputs: x}}
              - {id: e, run: 'true', stdout: {artifact: ok.txt, other: 1}}
            """
    )
    assert (
        "steps[0].stdout.artifact: artifact path '/etc/x' must be relative (to the artifacts folder)"
        in found
    )
    assert "steps[1].stderr.artifact: artifact path '../x' must not contain '..'" in found
    assert "steps[2].stdout.artifact: artifact path './' must name a file" in found
    assert (
        'steps[3].stderr.outputs: unknown field "outputs" (a stderr object has artifact)' in found
    )
    assert (
        'steps[4].stdout.other: unknown field "other" (a stdout object has artifact and outputs)'
        in found
    )
    assert "steps[4].stdout.artifact: an artifact needs artifacts.enabled to be true" in found
    ran = run_text(
        tmp_path,
        """
        params: [WHERE=../escape.txt]
        steps:
          - id: link
            run: ln -s /tmp "$DAG_RUN_ARTIFACTS_DIR/out"
          - id: through
            depends: link
            run: echo never
            stdout: {artifact: out/x.txt}
          - id: outside
            run: mkdir -p outside && ln -s "$PWD/outside" "$DAG_RUN_ARTIFACTS_DIR/far"
          - id: deeper
            depends: outside
            run: echo never
            stdout: {artifact: far/made/x.txt}
          - id: by_value
            run: echo never
            stdout: {artifact: "${params.WHERE}"}
        """,
    )
    assert ran.status("through") == "failed"
    assert "leaves the artifacts folder" in ran.error("through")
    assert not Path("/tmp/x.txt").exists()
    assert ran.status("deeper") == "failed"
    assert not (tmp_path / "outside" / "made").exists()  # no folder made out there
    assert ran.status("by_value") == "failed"
    assert "must not contain '..'" in ran.error("by_value")
    assert not (tmp_path / "home" / "runs" / "dag" / "escape.txt").exists()


def test_stdout_outputs_and_jq_select(tmp_path):
    """``stdout: {outputs}`` reads stdout into ``${ID.outputs.NAME}``: a field name (the
    trimmed text), a decoded object, ``{field, select}``, ``{fields}`` of literals and
    selections; an object ``output:`` with ``select`` picks by a jq filter and is
    ``${ID.outputs.KEY}`` too; a filter that finds nothing fails the step."""
    ran = run_text(
        tmp_path,
        """
        params: [environment=prod]
        steps:
          - id: text
            run: echo '  plain  '
            stdout: {outputs: said}
          - id: whole
            run: |
              echo '{"image": "v1", "tags": ["a", "b"]}'
            stdout: {outputs: {decode: json}}
          - id: picked
            run: |
              echo '{"meta": {"tag": "t9"}}'
            stdout: {outputs: {field: tag, select: .meta.tag}}
          - id: fields
            run: "printf 'report: yes\\nitems: [1, 2]\\n'"
            stdout:
              outputs:
                fields:
                  literal: "${params.environment}"
                  wrapped: {value: [x, "${params.environment}"]}
                  second: {decode: yaml, select: ".items[1]"}
          - id: object
            run: |
              echo '{"a": {"b": [5, 6]}}'
            output:
              first: {from: stdout, select: ".a.b[0]"}
          - id: lazy
            run: |
              echo '{"a": 3, "items": [{"id": 7}, "x"]}'
            output:
              first: {from: stdout, select: 'first(.a), error("later")'}
              ids: {from: stdout, select: ".items[] | .id"}
              endless: {from: stdout, select: "repeat(.a)"}
          - id: nothing
            run: |
              echo '{}'
            stdout: {outputs: {field: x, select: ".missing[]?"}}
          - id: use
            depends: [text, whole, picked, fields, object]
            env:
              - SEEN: >-
                  ${text.outputs.said}|${whole.outputs.image}|${whole.outputs.tags}|${picked.outputs.tag}|${fields.outputs.literal}|${fields.outputs.wrapped}|${fields.outputs.second}|${object.output.first}|${object.outputs.first}
            run: printf '%s\\n' "$SEEN"
        """,
    )
    assert ran.status("lazy") == "succeeded", ran.error("lazy")  # the first result only
    assert json.loads(ran.step("lazy").outputs["lazy.output"]) == {
        "first": 3,
        "ids": 7,
        "endless": 3,
    }
    assert ran.status("nothing") == "failed"
    assert "select '.missing[]?' found nothing" in ran.error("nothing")
    assert ran.stdout("use") == 'plain|v1|["a","b"]|t9|prod|["x","prod"]|2|5|5\n', ran.error("use")


def test_a_bad_jq_filter_is_a_validate_error():
    found = _problems(
        """
            steps:
              - id: a
                run: 'true'
                stdout: {outputs: {field: x, select: ".a["}}
              - id: b
                run: 'true'
                output: {k: {from: stdout, decode: text, select: .a}}
              - id: c
                run: 'true'
                stdout: {outputs: {fields: {k: 1}, field: x}}
            """
    )
    assert any(
        p.startswith("steps[0].stdout.outputs.select: select '.a[' is not a jq filter")
        for p in found
    ), found
    assert "steps[1].output.k.select: select needs decode: json or yaml" in found
    assert (
        "steps[2].stdout.outputs.fields: fields cannot be used with field, decode or select"
        in found
    )


def _problems(text: str) -> list[str]:
    """Each error as ``path: message``."""
    return [f"{p.path}: {p.message}" for p in problems(textwrap.dedent(text))]


def test_a_plain_reference_inside_single_quotes_stays_as_written(tmp_path):
    """Dagu's rule for values: ``'$X'`` and ``'${X}'`` stay as written (a namespaced
    ``'${env.X}'`` resolves); a quote counts only when another closes it after the
    reference, so one apostrophe quotes nothing; ``$'`` and an escaped quote open
    nothing. Harness ``with:`` values follow the same rule."""
    ran = run_text(
        tmp_path,
        r"""
        env:
          - SERVICE=api
          - A: "'$SERVICE' '${SERVICE}' '${env.SERVICE}' don't $SERVICE"
          - B: "it's $SERVICE, isn't it ${SERVICE:0:2}"
          - C: "$'x' $SERVICE"
          - D: "\\'$SERVICE'"
        steps:
          - id: show
            run: printf '%s\n' "$A" "$B" "$C" "$D"
        """,
    )
    assert ran.stdout("show") == (
        "'$SERVICE' '${SERVICE}' 'api' don't api\nit's $SERVICE, isn't it ap\n$'x' api\n\\'api'\n"
    )


def test_an_assigning_expression_keeps_its_fields_expressions(tmp_path):
    """A shell-style expression that would assign (``${EMPTY:=x}``) or fail
    (``${EMPTY:?x}``) makes Dagu's expansion of the field fail: every expression of that
    field stays as written, plain references still resolve; other fields are not touched."""
    ran = run_text(
        tmp_path,
        """
        env:
          - SERVICE=api
          - EMPTY=
          - KEPT: "$SERVICE ${SERVICE} ${SERVICE:-fallback} ${EMPTY:=fallback} ${EMPTY:-fallback} x${EMPTY}x"
          - FAILS: "${SERVICE:0:1} ${EMPTY:?unset}"
          - OTHER: "${SERVICE:0:1} ${EMPTY:-fallback}"
        steps:
          - id: show
            run: printf '%s\\n' "$KEPT" "$FAILS" "$OTHER"
        """,
    )
    assert ran.stdout("show") == (
        "api api ${SERVICE:-fallback} ${EMPTY:=fallback} ${EMPTY:-fallback} xx\n"
        "${SERVICE:0:1} ${EMPTY:?unset}\n"
        "a fallback\n"
    )


def test_typed_numbers_are_read_as_go_reads_them():
    """An integer or number param is ASCII digits as Go's ParseInt/ParseFloat read them:
    Python's int() would take ``1_000`` and Arabic-Indic digits; a secret-named param's
    value is not shown in the error."""
    from dagbox.params import ParamValueError, check, problem_of
    from dagbox.spec.model import Param

    integer, number = Param("n", type="integer"), Param("x", type="number")
    assert [problem_of(integer, v) is None for v in ("3", "+3", "-3", " 7 ")] == [True] * 4
    for bad in ("1_000", "\u0661\u0662", "3.0", "1e3", ""):
        assert problem_of(integer, bad) == f"must be an integer, not {bad!r}"
    assert [problem_of(number, v) is None for v in ("1.25", "-.5", "1e3", "2.")] == [True] * 4
    for bad in ("1_0.5", "\u0661.5", "nan", "inf", "0x10"):
        assert problem_of(number, bad) == f"must be a number, not {bad!r}"
    assert problem_of(integer, "99999999999999999999") is not None  # past 64 bits
    for declared, value in [
        (Param("API_TOKEN", type="integer"), "sk-live-123"),
        (Param("RATE_KEY", type="number", maximum=10), "987654321"),
        (Param("API_KEY", min_length=40), "short-secret-value"),
        (Param("API_KEY", enum=("a",)), "short-secret-value"),
    ]:
        with pytest.raises(ParamValueError) as info:
            check((declared,), {declared.name: value})
        assert value not in str(info.value), info.value


def test_bench_checks_typed_params_before_any_run(tmp_path):
    """``dagbox bench`` checks every task x matrix cell against the declarations before
    the first run, and names the cell (exit 2, nothing run)."""
    dag = tmp_path / "typed.yaml"
    dag.write_text(TYPED)
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    out = tmp_path / "out"
    done = subprocess.run(
        [*DAGBOX, "bench", str(dag), "--out", str(out), "-m", "environment=dev,prod",
         "-m", "replicas=2,9"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "param replicas: must be <= 5" in done.stderr
    assert "(in environment=dev, replicas=9)" in done.stderr
    assert not (tmp_path / "home" / "runs").exists()
    only_length = tmp_path / "length.yaml"
    only_length.write_text(
        "params: [{name: N, default: abcd, min_length: 3}]\nsteps: [{run: 'true'}]\n"
    )
    done = subprocess.run(
        [*DAGBOX, "bench", str(only_length), "--out", str(out), "-m", "N=a,bbbb"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "(in N=a)" in done.stderr


def test_run_variables_from_dagboxs_own_environment_do_not_reach_steps(tmp_path):
    """dagbox started from a step of another run (Dagu's or its own) has that run's
    variables; a step gets this run's, or none: no DAGU_OUTPUT_FILE of the other run to
    write into, no other step's stdout file in a handler."""
    dag = tmp_path / "dag.yaml"
    dag.write_text(
        "env: [{ROOT_OF: $DAGU_OUTPUT_FILE}]\n"
        "steps:\n"
        "  - id: show\n"
        "    env: [{S: '${DAGU_OUTPUT_FILE}'}]\n"
        '    preconditions: [{condition: test -z "$DAGU_OUTPUT_FILE"}]\n'
        '    run: echo "[${DAGU_OUTPUT_FILE-unset}] [$DAG_RUN_ID] [$ROOT_OF] [$S]"\n'
        "handler_on:\n"
        "  exit:\n"
        '    run: echo "[${DAG_RUN_STEP_STDOUT_FILE-unset}]"\n'
    )
    env = {
        **os.environ,
        "DAGBOX_HOME": str(tmp_path / "home"),
        "DAGU_OUTPUT_FILE": str(tmp_path / "parent-output"),
        "DAG_RUN_STEP_STDOUT_FILE": str(tmp_path / "parent-stdout"),
        "DAG_RUN_ID": "parent",
    }
    done = subprocess.run(
        [*DAGBOX, "run", "--run-id", "child", "-o", "quiet", str(dag)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    logs = {
        p.name.split(".")[0]: p.read_text()
        for p in tmp_path.glob("home/runs/dag/child/logs/*.stdout")
    }
    assert sorted(logs.values()) == [
        "[unset]\n",
        "[unset] [child] [$DAGU_OUTPUT_FILE] [${DAGU_OUTPUT_FILE}]\n",
    ], logs


def test_a_secret_named_const_is_masked(tmp_path):
    ran = run_text(
        tmp_path,
        """
        consts:
          - API_TOKEN: const-secret-value
        steps:
          - id: show
            run: echo "${consts.API_TOKEN}"
        """,
    )
    assert ran.stdout("show") == "***\n"


def test_validate_says_which_references_stay_as_written(tmp_path):
    """As Dagu's notices: a reference no run can resolve is a warning at its field
    (unknown const, context field, step output); one only a run can give a value
    (``${params.X}`` without a default, ``${params}`` without named params, an
    ``${env.X}`` the file does not set) is shown by ``--show-unresolved`` only, and never
    by ``run``."""
    dag = tmp_path / "refs.yaml"
    dag.write_text(
        "consts:\n"
        "  - known: k\n"
        "env:\n"
        "  - SET: s\n"
        "steps:\n"
        "  - id: a\n"
        "    run: echo '${consts.known} ${consts.missing} ${context.run.nope}'\n"
        "  - id: b\n"
        "    env: [OWN=o]\n"
        "    run: [echo ok, \"echo '${params.given} ${env.SET} ${env.OWN} ${env.ELSEWHERE} ${params}'\"]\n"
        "    with_unused: 1\n"[:-20]
        + "\n"
    )
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}

    def dagbox(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*DAGBOX, *args], capture_output=True, text=True, env=env, timeout=60, check=False
        )

    plain = dagbox("validate", str(dag))
    assert plain.returncode == 0, plain.stderr
    lines = plain.stderr.splitlines()
    assert any(
        "warning: steps[0].run: ${consts.missing} was left unchanged" in line
        and "(unknown_const_name)" in line
        for line in lines
    ), lines
    assert any("steps[0].run: ${context.run.nope}" in line for line in lines), lines
    assert not any("notice" in line or "consts.known" in line for line in lines), lines
    shown = dagbox("validate", "--show-unresolved", str(dag)).stderr.splitlines()
    notices = [line.split("notice: ", 1)[1] for line in shown if "notice: " in line]
    assert [n.split(" was left")[0] for n in notices] == [
        "steps[1].run[1]: ${params.given}",
        "steps[1].run[1]: ${env.ELSEWHERE}",
        "steps[1].run[1]: ${params}",
    ], shown
    rooted = tmp_path / "rooted.yaml"
    rooted.write_text(
        "env:\n  FIRST: a\n  IMAGE: ${steps.build.outputs.image}\n"
        "steps:\n  - id: build\n    run: echo '${context.run.id} ${context.dag.name}'\n"
        "    outputs: [{name: image}]\n"
    )
    plain = dagbox("validate", str(rooted)).stderr
    assert "rooted.yaml:3:10: warning: env[1]: ${steps.build.outputs.image}" in plain, plain
    assert "notice" not in plain
    shown = dagbox("validate", "--show-unresolved", str(rooted)).stderr
    assert "steps[0].run: ${context.run.id} has a value only in a run" in shown, shown
    assert "context.dag.name" not in shown
    ran = dagbox("run", "-o", "quiet", str(dag), "--", "given=g")
    assert "notice" not in ran.stderr and "unknown_const_name" in ran.stderr, ran.stderr


@pytest.mark.parametrize(
    "text",
    [
        """$(echo "a\\\\'${params.X}'b")""",  # an escaped quote opens nothing
        """$(echo "it's ${params.X}, isn't it")""",  # quotes inside double quotes are text
        "$(printf '%s' $'${params.X}')",  # ANSI-C quoting
        "$(cat <<EOF\nit's ${params.X}, isn't it\nEOF\n)",  # a heredoc body
        "$(: # it's\necho ${params.X}')",  # a quote in a comment
        """$(echo "$(echo "it's ${params.X}, isn't it")")""",  # nested double quotes
        "$(case a in a) echo \"'${params.X}'\";; esac)",  # an unbalanced )
    ],
)
def test_a_value_in_an_eval_is_never_run_as_a_command(tmp_path, text):
    """A value a shell expands (a param's ``eval:``) gets other values through its
    environment, never pasted as code, unless a shell would read the place as inside
    single quotes: the reading follows double quotes, escapes, comments, ``$'...'`` and
    heredocs, and says no when unsure."""
    pwned = tmp_path / "pwned"
    (tmp_path / "dag.yaml").write_text(
        "params:\n  - name: X\n    default: hello\n  - name: Y\n    eval: "
        + json.dumps(text)
        + "\nsteps:\n  - run: 'true'\n"
    )
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home")}
    subprocess.run(
        [*DAGBOX, "run", "-o", "quiet", str(tmp_path / "dag.yaml"), "--", f"X=$(touch {pwned})"],
        capture_output=True, text=True, env=env, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert not pwned.exists()


def test_json_values_read_as_dagu_writes_them(tmp_path):
    """A field of a JSON value reads as Dagu's Go gives it: numbers (float64 once JSON
    read them) in Go's ``%v`` form, objects as ``encoding/json`` writes them (compact, keys
    sorted, ``<>&`` escaped); an output object is written the same way."""
    from dagbox import gotext

    assert [gotext.text(v) for v in (7, 2.0, 2.5, 1234567, 1e20, 1e-5, None, True)] == [
        "7", "2", "2.5", "1.234567e+06", "1e+20", "1e-05", "<nil>", "true",
    ]  # fmt: skip
    assert gotext.json_text({"b": 2.0, "h": "<b>&", "e": 1e-7, "a": [1e21, None]}) == (
        '{"a":[1e+21,null],"b":2,"e":1e-7,"h":"\\u003cb\\u003e\\u0026"}'
    )
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: make
            run: |
              echo '{"n": 1234567, "obj": {"z": 1.0, "a": "<x>"}}'
            output: CFG
          - id: obj
            run: "true"
            output:
              whole: {value: {b: 1, a: 2}}
          - id: use
            depends: [make, obj]
            env:
              - SEEN: "${CFG.n}|${CFG.obj}|${obj.output.whole}"
            run: printf '%s\\n' "$SEEN"
        """,
    )
    assert ran.stdout("use") == '1.234567e+06|{"a":"\\u003cx\\u003e","z":1}|{"a":2,"b":1}\n'


def test_notices_know_what_a_run_sets_and_read_every_field(tmp_path):
    """No notice for what a run sets (an upstream ``output:``; a run variable a step's env
    can read is one only a run gives, as Dagu says) or a single-quoted ``'$X'``; an unknown const is found in ``stdout:`` and
    preconditions too; a ``fields`` entry is a literal, ``{value}``, or ``{decode,
    select}`` (an unknown key is an error, as in Dagu); Dagu's artifact paths
    (``dir/``, ``~notes.txt``) load."""
    loaded = load_text(
        "consts: [{k: v}]\n"
        "steps:\n"
        "  - id: a\n"
        "    output: RESULT\n"
        "    run: echo x\n"
        "    stdout: '${consts.nope}.txt'\n"
        "    preconditions: ['test ${consts.nope2}']\n"
        "  - id: b\n"
        "    depends: a\n"
        "    env: [X=$RESULT, Y=$DAG_RUN_ID, Z='$HOME']\n"
        "    run: 'true'\n"
        "    stderr: {artifact: dir/}\n"
        "  - {id: c, run: 'true', stdout: {artifact: ~notes.txt}}\n"
    )
    said = [f"{w.severity} {w.path}: {w.message.split(' was')[0]}" for w in loaded.warnings]
    assert said == [
        "warning steps[0].stdout: ${consts.nope}",
        "warning steps[0].preconditions[0]: ${consts.nope2}",
        "notice steps[1].env[1]: $DAG_RUN_ID has a value only in a run (namespace_unavailable)",
    ], said
    found = _problems(
        """
        steps:
          - run: 'true'
            stdout: {outputs: {fields: {obj: {a: 1}, ok: {decode: json}, lit: [1]}}}
        """
    )
    assert found == ['steps[0].stdout.outputs.fields.obj.a: unknown field "a"'], found


def test_a_steps_env_reads_the_run_variables_set_before_it(tmp_path):
    """As Dagu's fixture says: a step's env reads DAG_RUN_STEP_NAME (its own value may
    then replace it), not the step's stdout file or DAGU_OUTPUT_FILE, which dagbox sets
    after the env and which the env cannot replace; --show-unresolved says which is which."""
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: managed
            env:
              - NAME_COPY=${env.DAG_RUN_STEP_NAME}
              - STDOUT_COPY=${env.DAG_RUN_STEP_STDOUT_FILE}
              - OUTPUT_COPY=${env.DAGU_OUTPUT_FILE}
              - DAG_RUN_STEP_NAME=authored
              - DAGU_OUTPUT_FILE=authored
            run: |
              case "$DAGU_OUTPUT_FILE" in authored) o=bad;; *) o=managed;; esac
              echo "$NAME_COPY $DAG_RUN_STEP_NAME $STDOUT_COPY $OUTPUT_COPY $o"
              echo DECLARED=x >> "$DAGU_OUTPUT_FILE"
            outputs: [{name: DECLARED}]
        """,
    )
    assert ran.stdout("managed") == (
        "managed authored ${env.DAG_RUN_STEP_STDOUT_FILE} ${env.DAGU_OUTPUT_FILE} managed\n"
    ), ran.error("managed")
    notices = [w.message for w in load(tmp_path / "dag.yaml").warnings if w.severity == "notice"]
    assert [n.split(" ", 1)[1] for n in notices] == [
        "has a value only in a run (namespace_unavailable)",
        "was left unchanged: a step's env is read before DAG_RUN_STEP_STDOUT_FILE is set",
        "was left unchanged: a step's env is read before DAGU_OUTPUT_FILE is set",
    ], notices


@pytest.mark.parametrize(
    "text",
    [
        "$(printf '%s' '${params.X}')",
        """$(echo "$(printf '%s' '${params.X}')")""",  # one inside double quotes
    ],
)
def test_a_value_inside_single_quotes_of_an_eval_is_the_value(tmp_path, text):
    """Inside single quotes a shell would not expand ``${DAGBOX_VALUE_1}``: there the
    value itself is pasted (a shell reads it as text), also inside ``"$(...)"``."""
    (tmp_path / "dag.yaml").write_text(
        "params:\n  - name: X\n    default: hello\n  - name: Y\n    eval: "
        + json.dumps(text)
        + "\nsteps:\n  - id: show\n    run: printf '%s' \"$Y\"\n"
    )
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [*DAGBOX, "run", "-o", "quiet", str(tmp_path / "dag.yaml"), "--", "X=a $(b) c"],
        capture_output=True, text=True, env=env, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (log,) = (tmp_path / "home" / "runs" / "dag").glob("*/logs/*show*.stdout")
    assert log.read_text().strip('"') == "a $(b) c"
