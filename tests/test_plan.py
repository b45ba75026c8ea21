"""Plans: dispatch order, resolved dependencies, runtime per step, rendered tries."""

from dagbox import plan
from tests.conftest import load_text


def test_dispatch_order_is_fifo_in_file_order():
    dag = load_text(
        """
        steps:
          - id: a
            run: x
          - id: b
            depends: a
            run: x
          - id: c
            run: x
          - id: d
            depends: [b, c]
            run: x
        """
    ).dag
    order = plan.dispatch_order(dag)
    assert [(s.key, deps) for s, deps in order] == [
        ("a", ()),
        ("c", ()),
        ("b", ("a",)),
        ("d", ("b", "c")),
    ]


def test_depends_by_id_resolves_to_the_name():
    dag = load_text(
        "steps:\n  - id: a\n    name: Alpha\n    run: x\n  - name: b\n    depends: a\n    run: x\n"
    ).dag
    assert plan.build(dag).steps[1].depends == ("Alpha",)


def test_chain_depends_on_the_previous_step():
    dag = load_text("type: chain\nsteps: [{id: a, run: x}, {id: b, run: x}, {id: c, run: x}]\n").dag
    assert [s.depends for s in plan.build(dag).steps] == [(), ("a",), ("b",)]


def test_runtime_choice():
    dag = load_text(
        """
        container: {image: base}
        steps:
          - id: root
            run: x
          - id: own
            run: x
            container: {image: other}
          - id: named
            run: x
            container: web
        """
    ).dag
    assert [(s.runtime, s.image, s.container) for s in plan.build(dag).steps] == [
        ("root", "base", None),
        ("step", "other", None),
        ("exec", None, "web"),
    ]
    host = load_text("steps: [{id: a, run: x}]\n").dag
    assert plan.build(host).steps[0].runtime == "host"
    named_root = load_text("container: web\nsteps: [{id: a, run: x}]\n").dag
    assert plan.build(named_root).steps[0].runtime == "exec"


def test_step_kinds():
    dag = load_text(
        """
        steps:
          - {id: a, run: echo}
          - {id: b, run: [ls, -l]}
          - {id: c, run: "echo 1\\necho 2"}
          - {id: d, container: {image: x, command: [sleep, "1"]}}
          - {id: e, command: python3, script: "print(1)"}
        """
    ).dag
    assert [s.kind for s in plan.build(dag).steps] == [
        "command",
        "argv",
        "script",
        "image",
        "script",
    ]


def test_harness_tries_are_rendered_with_params():
    dag = load_text(
        """
        params: [P=claude, TASK=tests]
        harness: {provider: codex, model: base}
        steps:
          - id: fix
            action: harness.run
            with:
              provider: ${params.P}
              prompt: fix ${params.TASK}
              fallback: [{provider: aider}]
        """
    ).dag
    step = plan.build(dag, {"TASK": "docs"}).steps[0]
    assert [(t.provider, t.argv) for t in step.tries] == [
        ("claude", ("claude", "-p", "--model", "base", "--", "fix docs")),
        ("aider", ("aider", "--message=fix docs")),
    ]


def test_an_unknown_templated_provider_is_a_planned_error():
    dag = load_text(
        "params: [P=nobody]\nsteps:\n  - action: harness.run\n    with: {provider: '${params.P}', prompt: x}\n"
    ).dag
    assert plan.build(dag).steps[0].error == 'unknown provider "nobody"'


def test_handlers_are_planned():
    dag = load_text(
        "container: {image: i}\nhandler_on: {exit: {run: echo}}\nsteps: [{run: x}]\n"
    ).dag
    assert plan.build(dag).handlers["exit"].runtime == "root"
