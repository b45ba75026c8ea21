"""Plans: dispatch order, resolved dependencies, runtime per step, rendered tries."""

from dagbox.compiler import compile
from dagbox.plan import dispatch_order
from tests.conftest import dag_text, load_text


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
    order = dispatch_order(compile(dag))
    assert [(s.name, s.depends) for s in order] == [
        ("a", ()),
        ("c", ()),
        ("b", ("a",)),
        ("d", ("b", "c")),
    ]


def test_depends_by_id_resolves_to_the_name():
    dag = load_text(
        "steps:\n  - id: a\n    name: Alpha\n    run: x\n  - name: b\n    depends: a\n    run: x\n"
    ).dag
    assert compile(dag).steps[1].depends == ("Alpha",)


def test_chain_depends_on_the_previous_step():
    dag = load_text("type: chain\nsteps: [{id: a, run: x}, {id: b, run: x}, {id: c, run: x}]\n").dag
    assert [s.depends for s in compile(dag).steps] == [(), ("a",), ("b",)]


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
    assert [(s.runtime, s.image, s.container and s.container.exec) for s in compile(dag).steps] == [
        ("root", "base", None),
        ("step", "other", None),
        ("exec", None, "web"),
    ]
    host = load_text("steps: [{id: a, run: x}]\n").dag
    assert compile(host).steps[0].runtime == "host"
    named_root = load_text("container: web\nsteps: [{id: a, run: x}]\n").dag
    assert compile(named_root).steps[0].runtime == "exec"


def test_step_kinds():
    dag = load_text(
        """
        steps:
          - {id: a, run: echo}
          - {id: b, shell: direct, run: ls -l}
          - {id: c, run: "echo 1\\necho 2"}
          - {id: f, run: [echo 1, echo 2]}
          - {id: g, run: [echo 1]}
          - {id: d, container: {image: x, command: [sleep, "1"]}}
          - {id: e, command: python3, script: "print(1)"}
        """
    ).dag
    assert [s.kind for s in compile(dag).steps] == [
        "command",
        "argv",
        "script",
        "commands",
        "command",
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
    step = compile(dag, {"TASK": "docs"}).steps[0]
    assert [(t.provider, t.argv) for t in step.tries] == [
        ("claude", ("claude", "-p", "--model", "base", "--", "fix docs")),
        ("aider", ("aider", "--message=fix docs")),
    ]


def test_an_unknown_templated_provider_is_a_planned_error():
    dag = load_text(
        "params: [P=nobody]\nsteps:\n  - action: harness.run\n    with: {provider: '${params.P}', prompt: x}\n"
    ).dag
    assert compile(dag).steps[0].error == 'unknown provider "nobody"'


def test_handlers_are_planned():
    dag = load_text(
        "container: {image: i}\nhandler_on: {exit: {run: echo}}\nsteps: [{run: x}]\n"
    ).dag
    assert compile(dag).handlers["exit"].runtime == "root"


def test_dry_run_json_is_the_plan_that_runs(tmp_path):
    """The JSON dry-run prints reads back as the very Plan, and running that gives the run
    the DAG file gives: same statuses, outputs, attempts and stdout."""
    import subprocess

    import msgspec

    from dagbox.plan import Plan
    from dagbox.spec import load
    from tests.helpers import DAGBOX, run_plan

    dag = tmp_path / "dag.yaml"
    dag.write_text(
        dag_text(
            """
            params: [WHO=world]
            env: [GREETING=hello]
            handler_on: {exit: {run: 'echo "bye $DAG_RUN_STATUS"'}}
            steps:
              - {id: a, run: 'echo "$GREETING ${params.WHO}"', output: A}
              - {id: b, depends: a, run: ['echo got $A', 'exit 3'], continue_on: {exit_code: [3]}}
              - {id: c, depends: b, run: 'echo "$A"', retry_policy: {limit: 1}}
              - {id: d, depends: c, preconditions: [{condition: '${params.WHO}', expected: nobody}], run: 'true'}
            """
        )
    )
    out = subprocess.run(
        [*DAGBOX, "dry-run", "--json", str(dag), "-p", "WHO=plans"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    shipped = msgspec.json.decode(out.stdout, type=Plan)
    loaded = load(dag)
    assert shipped == compile(loaded.dag, {"WHO": "plans"}, loaded.path)

    from_json = run_plan(tmp_path / "json", shipped)
    from_file = run_plan(tmp_path / "file", compile(loaded.dag, {"WHO": "plans"}, loaded.path))
    for ran in (from_json, from_file):
        assert [s.status for s in ran.result.steps] == [
            "succeeded",
            "failed",
            "succeeded",
            "skipped",
        ]
        assert ran.result.status == "partially_succeeded"
    for name in ("a", "b", "c"):
        assert from_json.stdout(name) == from_file.stdout(name)
        assert from_json.step(name).attempts == from_file.step(name).attempts
        assert from_json.step(name).outputs == from_file.step(name).outputs
    assert from_json.stdout("a") == "hello plans\n"
    assert from_json.result.handlers["exit"].status == "succeeded"


def test_depends_read_in_file_order_and_run_in_the_order_written():
    dag = load_text("steps: [{id: a, run: x}, {id: b, run: x}, {id: c, depends: [b, a], run: x}]\n")
    step = compile(dag.dag).steps[2]
    assert (step.depends, step.upstream) == (("a", "b"), (1, 0))


def test_a_with_value_too_large_once_expanded_fails_its_step_not_the_compile():
    big = "x" * (1024 * 1024)
    refs = "${params.X}" * 17
    dag = load_text(
        f"params: [X={big}]\nsteps:\n  - action: harness.run\n    with: {{provider: claude, prompt: '{refs}'}}\n"
    ).dag
    assert "larger than 16 MiB" in (compile(dag).steps[0].error or "")
