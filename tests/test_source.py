"""Reading YAML: the 1.2 core schema, duplicate keys, and located syntax errors."""

from pathlib import Path

import pytest

from dagbox.spec import DagError, load
from dagbox.yaml12 import plain_scalar
from tests.conftest import load_text, one_problem, problems


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("true", True),
        ("False", False),
        ("10", 10),
        ("0755", 755),
        ("0o17", 15),
        ("0x1f", 31),
        ("5.5", 5.5),
        ("2024-01-01", "2024-01-01"),
        ("~", None),
        ("hello world", "hello world"),
    ],
)
def test_plain_scalars_follow_yaml_1_2(text, value):
    assert plain_scalar(text) == value


def test_yaml_1_1_booleans_stay_strings_in_env():
    dag = load_text(
        """
        env:
          - FLAG: yes
          - on: off
        steps:
          - run: echo
        """
    ).dag
    assert dag.env == (("FLAG", "yes"), ("on", "off"))


def test_duplicate_key_is_located_at_the_second_key():
    issue = one_problem(
        """
        steps:
          - id: a
            run: echo 1
            run: echo 2
        """
    )
    assert (issue.line, issue.col, issue.path) == (4, 5, "steps[0].run")
    assert "duplicate key 'run'" in issue.message


def test_duplicate_root_key():
    issue = one_problem(
        """
        name: a
        name: b
        steps: [{run: echo}]
        """
    )
    assert (issue.line, issue.path) == (2, "name")


def test_merge_keys_may_override_without_being_duplicates():
    dag = load_text(
        """
        steps:
          - &base
            id: a
            run: echo base
            timeout_sec: 5
          - <<: *base
            id: b
            timeout_sec: 9
        """
    ).dag
    assert (dag.steps[1].id, dag.steps[1].run, dag.steps[1].timeout_sec) == ("b", "echo base", 9)


def test_syntax_error_has_line_and_column():
    issue = one_problem(
        """
        steps:
          - run: echo
           bad: indent
        """
    )
    assert issue.line == 3
    assert issue.message.startswith("invalid YAML:")


def test_invalid_utf8_is_reported_with_its_position():
    with pytest.raises(DagError) as info:
        load(Path("bad.yaml"), b"steps:\n  - run: echo \xff\n")
    (issue,) = info.value.issues
    assert (issue.line, issue.col) == (2, 15)
    assert "not valid UTF-8" in issue.message


def test_nul_byte_is_an_error_not_a_crash():
    with pytest.raises(DagError) as info:
        load(Path("nul.yaml"), "steps:\n  - run: echo \x00\n")
    assert info.value.issues[0].line == 2


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n"])
def test_empty_file(text):
    assert "empty" in one_problem(text).message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_top_level_must_be_a_mapping(text):
    issue = one_problem(text)
    assert (issue.line, issue.col) == (1, 1)
    assert "expected a mapping" in issue.message


def test_a_later_document_is_a_sub_dag_that_needs_a_name():
    issue = one_problem("steps: [{run: a}]\n---\nsteps: [{run: b}]\n")
    assert issue.line == 3 and "needs a name" in issue.message


def test_missing_file_is_reported_not_raised(tmp_path):
    with pytest.raises(DagError) as info:
        load(tmp_path / "nope.yaml")
    assert "cannot read file" in str(info.value)


def test_errors_are_sorted_by_position():
    found = problems(
        """
        steps:
          - id: b
            depends: zzz
          - id: a
            bogus: 1
        """
    )
    assert [i.line for i in found] == sorted(i.line for i in found)


def test_byte_order_mark_is_ignored():
    assert load(Path("bom.yaml"), "\ufeffsteps: [{run: echo}]\n".encode()).dag.steps
