"""Sub-DAG calls and fan-out (docs/format.md, "Sub-DAGs"): real child runs on the host,
their records, what the calling step gives back, the shared budget, cancellation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.conftest import problems
from tests.helpers import DAGBOX, alive, run_text, wait_for

CHILD = """
---
name: child
params:
  - value: none
steps:
  - name: write
    run: printf '%s\\n' "${params.value}"
    output: CHILD_VALUE
"""


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "DAGBOX_HOME": str(tmp_path / "home")}


def test_dag_run_gives_the_childs_result_object(tmp_path):
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: one
            action: dag.run
            with: {dag: child, params: {value: hello}}
            output: RESULT
          - id: use
            depends: one
            run: echo "${RESULT.outputs.CHILD_VALUE} from ${RESULT.name}"
        """
        + CHILD,
    )
    assert ran.result.status == "succeeded", ran.error("one")
    document = json.loads(ran.stdout("one"))
    assert document == {
        "name": "child",
        "dagRunId": "r1.1.1",
        "params": "value=hello",
        "outputs": {"CHILD_VALUE": "hello"},
        "status": "succeeded",
    }
    assert '  "name": "child",\n' in ran.stdout("one")  # indented as Go's MarshalIndent
    assert ran.stdout("use") == "hello from child\n"
    child = json.loads((ran.home / "runs/dag/r1/children/r1.1.1/run.json").read_text())
    assert (child["parent_run_id"], child["parent_step"], child["root_run_id"]) == (
        "r1",
        "one",
        "r1",
    )
    assert child["steps"][0]["status"] == "succeeded"


@pytest.mark.parametrize(
    "params",
    ['"value=text"', "[value=text]", "[{value: text}]", "{value: text}"],
)
def test_call_params_in_every_form(tmp_path, params):
    ran = run_text(
        tmp_path,
        f"""
        steps:
          - {{id: one, call: child, params: {params}, output: R}}
        """
        + CHILD,
    )
    assert json.loads(ran.stdout("one"))["outputs"] == {"CHILD_VALUE": "text"}


def test_fan_out_over_objects_coalesces_equal_params(tmp_path):
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: fan
            action: dag.run
            with:
              dag: child
              params:
                - value: ${ITEM.account}/${ITEM.region}
            parallel:
              max_concurrent: 2
              items:
                - {account: acct-1, region: us}
                - {account: acct-1, region: us}
                - {account: acct-2, region: eu}
            output: RESULTS
          - id: use
            depends: fan
            run: echo "${RESULTS.outputs}"
        """
        + CHILD,
    )
    document = json.loads(ran.stdout("fan"))
    assert document["summary"] == {"total": 2, "succeeded": 2, "failed": 0}
    assert [r["outputs"]["CHILD_VALUE"] for r in document["results"]] == ["acct-1/us", "acct-2/eu"]
    assert document["outputs"] == [{"CHILD_VALUE": "acct-1/us"}, {"CHILD_VALUE": "acct-2/eu"}]
    assert '"total": 2' in ran.stdout("fan")
    children = sorted(p.name for p in (ran.home / "runs/dag/r1/children").iterdir())
    assert children == ["r1.1.1.0", "r1.1.1.1"]


def test_items_from_a_param_and_from_an_upstream_output(tmp_path):
    ran = run_text(
        tmp_path,
        """
        params:
          - items: '["alpha", "beta"]'
        steps:
          - {id: from_param, call: child, params: "value=${ITEM}", parallel: "${params.items}"}
          - {id: list, run: printf 'x\\ny\\nz\\n', output: LIST}
          - id: from_output
            depends: list
            call: child
            params: value=${ITEM}
            parallel: ${LIST}
        """
        + CHILD,
    )
    first = json.loads(ran.stdout("from_param"))
    assert [r["params"] for r in first["results"]] == ["value=alpha", "value=beta"]
    second = json.loads(ran.stdout("from_output"))
    assert [o["CHILD_VALUE"] for o in second["outputs"]] == ["x", "y", "z"]


def test_an_item_without_params_is_the_childs_params(tmp_path):
    ran = run_text(
        tmp_path,
        """
        steps:
          - {id: fan, call: show, parallel: [a, {value: b}, "value=c"]}
        ---
        name: show
        steps:
          - {id: s, run: 'echo "$1${value:-}"', output: OUT}
        """,
    )
    document = json.loads(ran.stdout("fan"))
    assert [r["outputs"]["OUT"] for r in document["results"]] == ["a", "b", "c"]


def test_a_failed_child_fails_the_step_with_its_error(tmp_path):
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: fan
            call: maybe
            parallel: [ok, bad, ok2]
            output: R
            continue_on: {failure: true}
          - {id: after, depends: fan, run: 'echo "${R.summary.failed} ${R.outputs[1].OK}"'}
        ---
        name: maybe
        steps:
          - {id: s, run: 'test "$1" != bad || { echo broken >&2; exit 3; }; echo "$1"', output: OK}
        """,
    )
    assert ran.status("fan") == "failed"
    assert ran.result.status == "partially_succeeded"
    assert "1 of 3 sub-DAG runs failed" in ran.error("fan")
    assert "fan[1]" in ran.error("fan") and "step s: exit code 3" in ran.error("fan")
    summary = json.loads(ran.stdout("fan"))["summary"]
    assert summary == {"total": 3, "succeeded": 2, "failed": 1}
    assert ran.stdout("after") == "1 ok2\n"  # a failed step's output: is still set


def test_a_child_runs_in_a_folder_of_its_own_unless_it_names_one(tmp_path):
    """As Dagu 2.x: not its caller's folder; siblings do not share one."""
    ran = run_text(
        tmp_path,
        """
        steps:
          - {id: fan, call: isolated, parallel: [a, b]}
          - {id: named, call: explicit}
        ---
        name: isolated
        steps:
          - {id: w, run: 'set -C; : > collision.txt; test "$PWD" = "$DAG_RUN_WORK_DIR"; pwd', output: WHERE}
        ---
        name: explicit
        working_dir: shared-work
        steps:
          - {id: w, run: pwd, output: WHERE}
          - {id: d, run: 'echo "$DAG_RUN_WORK_DIR"', output: RUN_DIR}
        """,
    )
    assert ran.result.status == "succeeded", ran.error("fan")
    folders = [r["outputs"]["WHERE"] for r in json.loads(ran.stdout("fan"))["results"]]
    assert len(set(folders)) == 2 and not (tmp_path / "collision.txt").exists()
    assert all(f.startswith(str(ran.home)) for f in folders)
    named = json.loads(ran.stdout("named"))["outputs"]["WHERE"]
    assert named == str(tmp_path / "shared-work")
    run_dir = ran.home / "runs/dag/r1/children/r1.2.1/work"
    assert json.loads(ran.stdout("named"))["outputs"]["RUN_DIR"] == str(run_dir)


def test_a_dag_file_beside_it_is_called_by_name(tmp_path):
    (tmp_path / "helper.yaml").write_text("steps:\n  - {id: h, run: echo helped, output: H}\n")
    ran = run_text(tmp_path, "steps:\n  - {id: c, action: dag.run, with: {dag: helper}}\n")
    assert json.loads(ran.stdout("c"))["outputs"] == {"H": "helped"}


def test_the_whole_tree_shares_the_roots_step_budget(tmp_path):
    """max_active_steps: 2 and a fan-out of 6 at max_concurrent 6: two leaf steps at most."""
    log = tmp_path / "log"
    ran = run_text(
        tmp_path,
        f"""
        max_active_steps: 2
        steps:
          - {{id: fan, call: busy, parallel: {{items: [1, 2, 3, 4, 5, 6], max_concurrent: 6}}}}
        ---
        name: busy
        steps:
          - id: s
            run: |
              echo start >> {log}
              n=$(grep -c start {log}); m=$(grep -c end {log} || true)
              echo "$((n - m))" >> {tmp_path}/running
              sleep 0.2
              echo end >> {log}
        """,
    )
    assert ran.result.status == "succeeded"
    assert max(int(n) for n in (tmp_path / "running").read_text().split()) <= 2


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ("steps:\n  - {call: nothere}\n", "steps[0].call", 'no DAG named "nothere"'),
        (
            "steps:\n  - {call: a}\n---\nname: a\nsteps:\n  - {call: b}\n---\nname: b\n"
            "steps:\n  - {call: a}\n",
            "steps[0].call",
            "a -> b -> a",
        ),
        ("steps:\n  - {run: x, parallel: [a]}\n", "steps[0].parallel", "for sub-DAG calls"),
        (
            "steps:\n  - {call: c, parallel: {items: [a], max_concurrent: 1.5}}\n" + CHILD,
            "steps[0].parallel.max_concurrent",
            "must be an integer",
        ),
        (
            "steps:\n  - {call: c, parallel: {items: [a], max_concurrent: 1001}}\n" + CHILD,
            "steps[0].parallel.max_concurrent",
            "from 1 through 1000",
        ),
        (
            "steps:\n  - {call: child, parallel: {items: [a], unexpected: v}}\n" + CHILD,
            "steps[0].parallel.unexpected",
            'unknown parallel field "unexpected"',
        ),
        (
            "steps:\n  - {call: child, parallel: [{nested: {value: one}}]}\n" + CHILD,
            "steps[0].parallel[0].nested",
            "not a mapping",
        ),
        ("steps:\n  - {run: a}\n---\nsteps:\n  - {run: b}\n", "", "needs a name"),
        (
            "steps:\n  - {action: dag.run, with: {dag: child, queue: q}}\n" + CHILD,
            "steps[0].with.queue",
            "dag.run does not support with.queue",
        ),
        (
            "steps:\n  - {call: child, run: echo}\n" + CHILD,
            "steps[0].run",
            "cannot be used together",
        ),
    ],
)
def test_call_mistakes_are_located_errors(text, where, says):
    found = [p for p in problems(text) if p.severity == "error"]
    assert any(p.path == where and says in p.message for p in found), found


def test_status_shows_the_tree_and_logs_reach_a_child(tmp_path):
    dag = tmp_path / "tree.yaml"
    dag.write_text(
        "steps:\n  - id: fan\n    call: child\n    params: value=${ITEM}\n    parallel: [x, y]\n"
        + CHILD
    )
    env = _env(tmp_path)
    done = subprocess.run(
        [*DAGBOX, "run", str(dag), "--run-id", "t1"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "fan[0]/write | x\n" in done.stdout and "fan[1]/write | y\n" in done.stdout
    status = subprocess.run(
        [*DAGBOX, "status", "t1"], env=env, capture_output=True, text=True, check=True
    )
    assert "↳ 2 child runs: 2 succeeded" in status.stdout
    assert "run t1.1.1.0: succeeded" in status.stdout
    logs = subprocess.run(
        [*DAGBOX, "logs", "t1.1.1.1"], env=env, capture_output=True, text=True, check=True
    )
    assert logs.stdout == "write | y\n"
    child = subprocess.run(
        [*DAGBOX, "status", "t1.1.1.1"], env=env, capture_output=True, text=True, check=True
    )
    assert "called by: run t1, step fan" in child.stdout


def test_failures_output_shows_only_failed_children(tmp_path):
    dag = tmp_path / "f.yaml"
    dag.write_text(
        "steps:\n  - {id: fan, call: m, parallel: [good, bad]}\n---\nname: m\nsteps:\n"
        "  - {id: s, run: 'echo said-$1; test $1 = good'}\n"
    )
    done = subprocess.run(
        [*DAGBOX, "run", "-o", "failures", str(dag)],
        check=False,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "said-bad" in done.stdout and "said-good" not in done.stdout
    assert "fan[1]/s" in done.stdout


def test_interrupting_a_parent_stops_twenty_children(tmp_path):
    """SIGINT to the root: every child stops as an interrupted run (its exit handler runs,
    its record ends aborted), no process is left, and dagbox exits 130."""
    pids = tmp_path / "pids"
    pids.mkdir()
    dag = tmp_path / "many.yaml"
    dag.write_text(
        textwrap.dedent(
            f"""\
            steps:
              - id: fan
                call: sleeper
                parallel:
                  items: [{", ".join(str(i) for i in range(20))}]
                  max_concurrent: 20
            ---
            name: sleeper
            handler_on:
              exit: {{run: 'echo "$DAG_RUN_STATUS" > {tmp_path}/exit-$1'}}
            steps:
              - id: s
                run: echo $$ > {pids}/$1; exec sleep 300
            """
        )
    )
    proc = subprocess.Popen(
        [*DAGBOX, "run", str(dag), "--run-id", "many"],
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(list(pids.iterdir())) == 20, timeout=60, what="20 children to run")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()
    for pid_file in pids.iterdir():
        assert not alive(int(pid_file.read_text())), pid_file.name
    assert sorted(p.name for p in tmp_path.glob("exit-*")) == sorted(f"exit-{i}" for i in range(20))
    assert {p.read_text() for p in tmp_path.glob("exit-*")} == {"aborted\n"}
    records = list((tmp_path / "home/runs/many/many/children").glob("*/run.json"))
    assert len(records) == 20
    assert {json.loads(r.read_text())["status"] for r in records} == {"aborted"}


def test_a_reference_names_the_dag_and_params_text_splits_once_resolved(tmp_path):
    """As Dagu: ``dag: ${ITEM}`` picks a document per item; a params string is split after
    its references are resolved, so an item "A=1 B=2" is two params."""
    ran = run_text(
        tmp_path,
        """
        steps:
          - {id: pick, action: dag.run, with: {dag: "${ITEM}"}, parallel: [left, right]}
          - id: split
            call: pair
            params: "${ITEM}"
            parallel: ["A=1 B=2"]
        ---
        name: left
        steps: [{id: s, run: echo L, output: SIDE}]
        ---
        name: right
        steps: [{id: s, run: echo R, output: SIDE}]
        ---
        name: pair
        params: [A=none, B=none]
        steps: [{id: s, run: 'echo "${params.A}+${params.B}"', output: SUM}]
        """,
    )
    picked = json.loads(ran.stdout("pick"))
    assert [r["name"] for r in picked["results"]] == ["left", "right"]
    assert [o["SIDE"] for o in picked["outputs"]] == ["L", "R"]
    assert json.loads(ran.stdout("split"))["outputs"] == [{"SUM": "1+2"}]


def test_a_plan_read_from_json_runs_its_calls_and_nesting_is_bounded(tmp_path):
    """The plan (dagbox dry-run --json) carries its sub-DAGs; a plan that was not validated
    (a circle of calls made by hand) stops at the depth limit instead of running forever."""
    import msgspec

    from dagbox.compiler import compile
    from dagbox.engine.calls import MAX_DEPTH
    from dagbox.plan import Plan
    from dagbox.spec import load
    from tests.helpers import run_plan

    path = tmp_path / "deep.yaml"
    path.write_text(
        "steps:\n  - {id: go, call: a}\n---\nname: a\nsteps:\n  - {id: down, call: b}\n"
        "---\nname: b\nsteps:\n  - {id: leaf, run: echo leaf, output: LEAF}\n"
    )
    loaded = load(path)
    plan = msgspec.json.decode(
        msgspec.json.encode(compile(loaded.dag, {}, loaded.path, loaded.dags)), type=Plan
    )
    ran = run_plan(tmp_path, plan)
    assert ran.result.status == "succeeded", ran.error("go")
    grandchild = ran.home / "runs/deep/r1/children/r1.1.1/children/r1.1.1.1.1/run.json"
    assert json.loads(grandchild.read_text())["root_run_id"] == "r1"
    looping = msgspec.structs.replace(plan, dags={**plan.dags, "b": plan.dags["a"]})
    ran = run_plan(tmp_path / "loop", looping)
    assert ran.status("go") == "failed"
    assert f"nest deeper than {MAX_DEPTH}" in ran.error("go")


def test_a_path_with_item_a_partial_child_and_output_values(tmp_path):
    """``dag:`` a path holding ${ITEM} (each found at validate); a child that partially
    succeeded makes the run partially_succeeded; a child's ``stdout: {outputs}`` comes
    back as outputValues; a named param keeps its spaces."""
    for n in ("01", "02"):
        (tmp_path / "kids").mkdir(exist_ok=True)
        (tmp_path / "kids" / f"child_{n}.yaml").write_text(
            f"name: child-{n}\nparams: [NOTE=none]\nsteps:\n"
            f"  - {{id: s, run: 'echo \"{n} $NOTE\"', output: SAID}}\n"
        )
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: fan
            action: dag.run
            with: {dag: "kids/child_${ITEM}.yaml", params: 'NOTE="${ITEM} and more"'}
            parallel: ["01", "02"]
          - {id: partial, call: shaky}
        ---
        name: shaky
        steps:
          - {id: bad, run: exit 1, continue_on: {failure: true}}
          - id: good
            run: "echo '{\\"value\\": \\"kept\\"}'"
            stdout: {outputs: {fields: {v: {decode: json, select: .value}}}}
        """,
    )
    fan = json.loads(ran.stdout("fan"))
    assert [r["name"] for r in fan["results"]] == ["child-01", "child-02"]
    assert [o["SAID"] for o in fan["outputs"]] == ["01 01 and more", "02 02 and more"]
    partial = json.loads(ran.stdout("partial"))
    assert partial["status"] == "partially_succeeded" and partial["outputValues"] == {"v": "kept"}
    assert ran.status("partial") == "succeeded"
    assert ran.result.status == "partially_succeeded"
    missing = problems(
        'steps:\n  - {action: dag.run, with: {dag: "kids/x_${ITEM}.yaml"}, parallel: [a]}\n'
    )
    assert any('no DAG named "kids/x_a.yaml"' in p.message for p in missing), missing


def test_secrets_stay_masked_across_a_call(tmp_path):
    """One set of secrets for the tree: a child's secret output is masked in its caller's
    result (in Go's escaped JSON too), and a caller's secret passed as a plain param is
    masked in the child's record."""
    ran = run_text(
        tmp_path,
        """
        params: [DB_PASSWORD=p&ss<word>1]
        steps:
          - {id: give, call: child, params: "VALUE=${DB_PASSWORD}", output: R}
          - {id: take, call: maker, output: M}
        """
        + CHILD.replace("value: none", "VALUE: none").replace("${params.value}", "${params.VALUE}")
        + """
---
name: maker
steps:
  - {id: make, run: echo made-secret-value, output: API_TOKEN}
""",
    )
    assert ran.result.status == "succeeded", ran.error("give")
    assert "p&ss<word>1" not in ran.stdout("give") and "p\\u0026ss" not in ran.stdout("give")
    assert "made-secret-value" not in ran.stdout("take")
    child = (ran.home / "runs/dag/r1/children/r1.1.1/run.json").read_text()
    assert "p&ss<word>1" not in child and "***" in child


def test_a_child_takes_only_params_it_declares_and_reads_them_in_working_dir(tmp_path):
    """As Dagu: a child that declares named params refuses others (item data cannot set
    LD_PRELOAD); a JSON object item is named params; working_dir reads the call's params."""
    ran = run_text(
        tmp_path,
        """
        steps:
          - {id: bad, call: strict, params: "${ITEM}", parallel: ["LD_PRELOAD=/tmp/x.so"], continue_on: {failure: true}}
          - id: good
            call: strict
            params: "${ITEM}"
            parallel: ['{"TASK": "t1"}']
            depends: bad
        ---
        name: strict
        params: [TASK=none]
        working_dir: dirs/${params.TASK}
        steps:
          - {id: s, run: pwd, output: WHERE}
        """,
    )
    assert ran.status("bad") == "failed"
    assert 'unknown parameter(s): "LD_PRELOAD"' in ran.error("bad")
    good = json.loads(ran.stdout("good"))
    assert good["outputs"] == [{"WHERE": str(tmp_path / "dirs" / "t1")}]


def test_two_calls_may_reach_one_file_and_a_2x_run_word_stays_a_command(tmp_path):
    (tmp_path / "shared.yaml").write_text("steps:\n  - {id: s, run: echo shared, output: S}\n")
    (tmp_path / "middle.yaml").write_text("steps:\n  - {id: m, call: shared}\n")
    ran = run_text(
        tmp_path,
        """
        steps:
          - {id: a, call: shared}
          - {id: b, call: middle}
          - {id: c, run: shared, continue_on: {failure: true}}
        """,
    )
    assert ran.status("a") == ran.status("b") == "succeeded", ran.error("b")
    assert ran.step("c").error and "shared" not in json.dumps(ran.step("c").outputs)
    warned = [str(w) for w in ran_warnings(tmp_path)]
    assert any("Dagu 2.x and dagbox run the command shared" in w for w in warned), warned


def ran_warnings(tmp_path):
    from dagbox.spec import load

    return load(tmp_path / "dag.yaml").warnings
