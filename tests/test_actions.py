"""Builtin actions dagbox runs itself: file.write, file.read, jq.filter (and Dagu 1.x's
``type: jq``); what they print is what ``output:`` captures, as in Dagu."""

from __future__ import annotations

import json
import stat

import pytest

from tests.conftest import problems
from tests.helpers import run_text


def test_file_write_then_read(tmp_path):
    ran = run_text(
        tmp_path,
        """
        params: [WHO=prod]
        steps:
          - id: write
            action: file.write
            with:
              path: out/made.txt
              content: |
                ${params.WHO}
              create_dirs: true
            output: WROTE
          - {id: read, depends: write, action: file.read, with: {path: out/made.txt}, output: READ}
          - id: json
            depends: write
            action: file.read
            with: {path: out/made.txt, format: json}
          - {id: use, depends: [read], run: 'echo "[${READ}]"'}
        """,
    )
    assert ran.result.status == "succeeded", ran.error("write")
    made = tmp_path / "out" / "made.txt"
    assert made.read_text() == "prod\n"
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    assert json.loads(ran.stdout("write")) == {
        "operation": "write",
        "path": str(made),
        "bytes": 5,
        "created": True,
    }
    assert ran.stdout("read") == "prod\n" and ran.stdout("use") == "[prod]\n"
    assert json.loads(ran.stdout("json"))["content"] == "prod\n"


def test_action_values_do_not_read_dagboxs_own_environment(tmp_path, monkeypatch):
    """As Dagu's actions: ``$X`` of the process environment stays as written; the DAG's
    env is read."""
    monkeypatch.setenv("ONLY_IN_PROCESS", "from-process")
    ran = run_text(
        tmp_path,
        """
        env: [IN_DAG=from-dag]
        steps:
          - id: w
            action: file.write
            with: {path: seen.txt, content: "$ONLY_IN_PROCESS ${IN_DAG}"}
        """,
    )
    assert ran.status("w") == "succeeded", ran.error("w")
    assert (tmp_path / "seen.txt").read_text() == "$ONLY_IN_PROCESS from-dag"


def test_a_backslash_dollar_in_an_action_value_is_a_dollar(tmp_path):
    """As Dagu: ``\\$`` in what an action reads is a plain ``$`` (no shell reads it)."""
    ran = run_text(
        tmp_path,
        r"""
        env:
          - PRICE: '\$9.99'
        steps:
          - id: price
            action: jq.filter
            with: {filter: .price, data: '{"price": "${PRICE}"}', raw: true}
            output: PRICE_OUT
        """,
    )
    assert ran.status("price") == "succeeded", ran.error("price")
    assert ran.step("price").outputs == {"PRICE_OUT": "$9.99"}


def test_file_write_refuses_an_existing_file_unless_told(tmp_path):
    (tmp_path / "there.txt").write_text("old")
    ran = run_text(
        tmp_path,
        """
        steps:
          - {id: refused, action: file.write, with: {path: there.txt, content: new}}
          - id: replaced
            depends: refused
            continue_on: {failure: true}
            action: file.write
            with: {path: there.txt, content: new, overwrite: true, mode: "0640"}
        """,
    )
    assert ran.status("refused") == "failed"
    assert "file write" in ran.error("refused") and "exists" in ran.error("refused")
    assert (tmp_path / "there.txt").read_text() == "old"


def test_file_write_overwrite_replaces_with_the_mode(tmp_path):
    (tmp_path / "there.txt").write_text("old")
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: replaced
            action: file.write
            with: {path: there.txt, content: new, overwrite: true, mode: "0640"}
        """,
    )
    assert ran.status("replaced") == "succeeded", ran.error("replaced")
    assert (tmp_path / "there.txt").read_text() == "new"
    assert stat.S_IMODE((tmp_path / "there.txt").stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir() if ".tmp." in p.name] == []


def test_jq_filter_prints_as_dagu_does(tmp_path):
    (tmp_path / "in.json").write_text('{"n": 13786123706, "x": 1e21}')
    ran = run_text(
        tmp_path,
        """
        steps:
          - {id: pretty, action: jq.filter, with: {filter: .items, data: {items: [1, 2.5, {b: 1, a: "<"}]}}}
          - id: raw
            action: jq.filter
            with: {filter: '.messages[]', data: '{"messages": ["hello", null, "world"]}', raw: true}
            output: MESSAGES
          - {id: numbers, action: jq.filter, with: {filter: '.n, .x', input: in.json, raw: true}}
          - {id: broken, action: jq.filter, with: {filter: '.a.b', data: '{"a": 1}'}}
          - {id: legacy, type: jq, command: .foo, script: '{"foo": "bar"}'}
        """,
    )
    assert ran.result.status == "succeeded"
    assert ran.stdout("pretty") == (
        '[\n    1,\n    2.5,\n    {\n        "a": "\\u003c",\n        "b": 1\n    }\n]\n'
    )
    assert ran.stdout("raw") == "hello\n\nworld\n"
    assert ran.step("raw").outputs == {"MESSAGES": "hello\n\nworld"}
    assert ran.stdout("numbers") == "13786123706\n1000000000000000000000\n"
    assert ran.stdout("broken") == ""  # a runtime error goes to stderr; the step succeeds
    assert "failed to run jq query" in (tmp_path / ran.step("broken").stderr_file).read_text()
    assert ran.stdout("legacy") == '"bar"\n'


@pytest.mark.parametrize(
    ("step", "where", "says"),
    [
        ("{action: file.write, with: {path: a}}", "steps[0].with", "needs with.content"),
        (
            "{action: file.write, with: {path: a, content: b, append: true}}",
            "steps[0].with.append",
            "has no with.append",
        ),
        (
            "{action: file.write, with: {path: a, content: b, mode: 644}}",
            "steps[0].with.mode",
            "must be a string",
        ),
        (
            "{action: file.write, with: {path: a, content: b, mode: '999'}}",
            "steps[0].with.mode",
            "invalid mode",
        ),
        (
            "{action: file.read, with: {path: a, format: yaml}}",
            "steps[0].with.format",
            "raw or json",
        ),
        ("{action: jq.filter, with: {data: '{}'}}", "steps[0].with", "needs with.filter"),
        (
            "{action: jq.filter, with: {filter: ., data: '{}', input: f}}",
            "steps[0].with.input",
            "not both",
        ),
        ("{action: template.render, with: {template: x}}", "steps[0].action", "text/template"),
        (
            "{action: file.copy, with: {source: a, destination: b}}",
            "steps[0].action",
            "not supported",
        ),
        (
            "{action: file.read, with: {path: a}, container: {image: x}}",
            "steps[0].container",
            "a container does not apply",
        ),
    ],
)
def test_action_mistakes_are_located_errors(step, where, says):
    found = [p for p in problems(f"steps:\n  - {step}\n") if p.severity == "error"]
    assert any(p.path == where and says in p.message for p in found), found
