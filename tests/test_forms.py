"""Every accepted form of the flexible keys, and the canonical value it becomes."""

import pytest

from dagbox.spec.model import Condition, ContinueOn, Param, Volume
from tests.conftest import load_text, one_problem, problems


def step_of(yaml_step: str, root: str = ""):
    return load_text(root + "steps:\n  - " + yaml_step.replace("\n", "\n    ") + "\n").dag.steps[0]


@pytest.mark.parametrize(
    "env",
    [
        "{A: '1', B: two}",
        "[A=1, B=two]",
        "[{A: 1}, {B: two}]",
        "[A=1, {B: two}]",
    ],
)
def test_env_forms(env):
    assert load_text(f"env: {env}\nsteps: [{{run: echo}}]\n").dag.env == (("A", "1"), ("B", "two"))


def test_env_keeps_order_and_repeats_and_scalar_text():
    dag = load_text(
        "env: [A=1, 'B=${A}x', A=2, {T: true}, {F: 1.0}, {N: null}]\nsteps: [{run: echo}]\n"
    ).dag
    assert dag.env == (("A", "1"), ("B", "${A}x"), ("A", "2"), ("T", "true"), ("F", "1"), ("N", ""))


def test_env_value_keeps_equals_signs():
    assert load_text("env: ['URL=a=b=c']\nsteps: [{run: echo}]\n").dag.env == (("URL", "a=b=c"),)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("depends: a", ("a",)),
        ("depends: [a, b]", ("a", "b")),
        ("depends: []", ()),
        ("depends:", ()),
    ],
)
def test_depends_forms(text, expected):
    dag = load_text(
        f"steps:\n  - id: a\n    run: x\n  - id: b\n    run: x\n  - id: c\n    run: x\n    {text}\n"
    ).dag
    assert dag.steps[2].depends == expected


def test_depends_absent_is_none():
    assert step_of("run: x").depends is None


def test_container_string_is_exec_mode():
    c = step_of("run: x\ncontainer: web").container
    assert (c.exec, c.image) == ("web", None)


def test_container_object_defaults():
    c = step_of("run: x\ncontainer: {image: alpine}").container
    assert (c.pull_policy, c.startup, c.wait_for, c.keep_container) == (
        "missing",
        "keepalive",
        "running",
        False,
    )


@pytest.mark.parametrize(
    ("value", "policy"),
    [
        ("always", "always"),
        ("missing", "missing"),
        ("never", "never"),
        ("fallback", "fallback"),
        ("true", "always"),
        ("false", "never"),
        ("'true'", "always"),
        ("'0'", "never"),
        ("t", "always"),
        ("F", "never"),
        ("'TRUE'", "always"),
        ("'False'", "never"),
    ],
)
def test_pull_policy_forms(value, policy):
    assert (
        step_of(f"run: x\ncontainer: {{image: a, pull_policy: {value}}}").container.pull_policy
        == policy
    )


def test_volumes_parsed():
    c = step_of(
        "run: x\ncontainer: {image: a, volumes: ['.:/w', '/a:/b:ro', 'cache:/root/.cache:rw', '~/x:/x']}"
    ).container
    assert c.volumes == (
        Volume(".", "/w"),
        Volume("/a", "/b", True),
        Volume("cache", "/root/.cache"),
        Volume("~/x", "/x"),
    )


def test_ports_forms():
    c = step_of(
        "run: x\ncontainer: {image: a, ports: ['80', '80/udp', '8080:80', '127.0.0.1:8080:80', 443]}"
    ).container
    assert c.ports == ("80", "80/udp", "8080:80", "127.0.0.1:8080:80", "443")


def test_container_shell_and_command_accept_a_string_or_a_list():
    c = step_of("run: x\ncontainer: {image: a, shell: 'bash -c', command: [sleep, '10']}").container
    assert (c.shell, c.command) == (("bash", "-c"), ("sleep", "10"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("continue_on: failed", ContinueOn(failed=True)),
        ("continue_on: Skipped", ContinueOn(skipped=True)),
        ("continue_on: {failure: true}", ContinueOn(failed=True)),
        ("continue_on: {exit_code: 3}", ContinueOn(exit_code=(3,))),
        (
            "continue_on: {exit_code: [1, 2], output: 're:warn.*', mark_success: true}",
            ContinueOn(exit_code=(1, 2), output=("re:warn.*",), mark_success=True),
        ),
        ("continue_on: {output: [a, b]}", ContinueOn(output=("a", "b"))),
    ],
)
def test_continue_on_forms(text, expected):
    assert step_of("run: x\n" + text).continue_on == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("preconditions: test -f x", (Condition("test -f x"),)),
        (
            "preconditions: [test -f x, {condition: '$A', expected: 'yes'}]",
            (Condition("test -f x"), Condition("$A", expected="yes")),
        ),
        (
            "preconditions: {condition: '`date`', expected: 're:20.*', negate: true}",
            (Condition("`date`", expected="re:20.*", negate=True),),
        ),
        (
            "preconditions: [{eval: '`date`', expected: x}]",
            (Condition(eval="`date`", expected="x"),),
        ),
        ("precondition: test -d /", (Condition("test -d /"),)),
    ],
)
def test_precondition_forms(text, expected):
    assert step_of("run: x\n" + text).preconditions == expected


@pytest.mark.parametrize(
    ("condition", "where", "says"),
    [
        ("{eval: '$(printf ready)'}", "preconditions[0].eval", '"eval" needs "expected"'),
        ("{condition: ready, expected: '   '}", "preconditions[0].expected", "expected is blank"),
        ("{condition: ready, expected: 're:'}", "preconditions[0].expected", "empty regexp"),
    ],
)
def test_preconditions_dagu_2_refuses(condition, where, says):
    """As Dagu 2.x's own precondition fixtures: each is a located load error."""
    problem = one_problem(f"preconditions: [{condition}]\nsteps: [{{run: 'true'}}]\n")
    assert (problem.path, says in problem.message) == (where, True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params: 'A=1 B=\"x y\"'", (Param("A", "1"), Param("B", "x y"))),
        ("params: 'one two'", (Param("1", "one"), Param("2", "two"))),
        (
            "params: 'first A=1 second'",
            (Param("1", "first"), Param("A", "1"), Param("2", "second")),
        ),
        ("params: {B: 2, A: 1}", (Param("A", "1"), Param("B", "2"))),
        ("params: [{B: 2}, {A: 1}]", (Param("B", "2"), Param("A", "1"))),
        ("params: ['A=1', 'B=']", (Param("A", "1"), Param("B", ""))),
        ("params: [{name: A, default: 3, description: how many}]", (Param("A", "3", "how many"),)),
        ("params: [{name: A, description: no default}]", (Param("A", None, "no default"),)),
        ("params: 'CMD=`date`'", (Param("CMD", "`date`"),)),
    ],
)
def test_params_forms(text, expected):
    assert load_text(text + "\nsteps: [{run: echo}]\n").dag.params == expected


def test_retry_policy_forms():
    r = step_of(
        "run: x\nretry_policy: {limit: '${params.N}', interval_sec: 2, backoff: true, exit_code: 3, max_interval_sec: 9}"
    ).retry_policy
    assert (r.limit, r.interval_sec, r.backoff, r.exit_code, r.max_interval_sec) == (
        "${params.N}",
        2,
        True,
        (3,),
        9,
    )


@pytest.mark.parametrize(
    ("text", "run"),
    [
        ("run: echo hi", "echo hi"),
        ("command: echo hi", "echo hi"),
        ("run: [echo 1, ' ', {echo a: b}, true, 3]", ("echo 1", "echo a: b", "true", "3")),
        ("command: ['ls -l', 3]", ("ls -l", "3")),
        ("run: 42", "42"),
    ],
)
def test_run_forms(text, run):
    assert step_of(text).run == run


def test_script_with_command_is_an_interpreter():
    s = step_of("command: python3\nscript: |\n  print(1)")
    assert (s.run, s.script) == ("python3", "print(1)\n")


def test_step_shell_forms():
    assert step_of("run: x\nshell: bash -e").shell == ("bash", "-e")
    assert step_of("run: x\nshell: [zsh]").shell == ("zsh",)
    assert step_of("run: x\nwith: {shell: bash}").shell == ("bash",)


def test_steps_as_a_map_are_named_by_key_and_sorted():
    dag = load_text("steps:\n  zeta: {run: echo z}\n  alpha: {run: echo a, depends: zeta}\n").dag
    assert [s.name for s in dag.steps] == ["alpha", "zeta"]
    assert dag.steps[0].depends == ("zeta",)


def test_a_bare_string_step_is_a_command():
    dag = load_text("steps:\n  - echo one\n  - echo two\n").dag
    assert [(s.name, s.run) for s in dag.steps] == [("cmd_1", "echo one"), ("cmd_2", "echo two")]


def test_generated_names_follow_dagu():
    dag = load_text(
        """
        steps:
          - run: echo
          - script: echo
          - id: named
            run: echo
          - action: harness.run
            with: {provider: claude, prompt: hi}
          - container: {image: a}
        """
    ).dag
    assert [s.name for s in dag.steps] == ["cmd_1", "script_2", "named", "harness_4", "docker_5"]


def test_handlers_get_dagu_names():
    dag = load_text(
        "handler_on: {exit: {run: echo}, cancel: {run: echo}}\nsteps: [{run: echo}]\n"
    ).dag
    assert (dag.handler_on.exit.name, dag.handler_on.abort.name) == ("onExit", "onAbort")


def test_string_fields_accept_numbers_as_text():
    s = step_of("id: a\nname: 2024\nrun: echo")
    assert s.name == "2024"


def test_harness_with_values_are_kept_as_written():
    s = step_of(
        "action: harness.run\nwith: {provider: codex, prompt: hi, max_turns: 3, tags: [a, b], opts: {x: 1}}"
    )
    assert s.with_ == {
        "provider": "codex",
        "prompt": "hi",
        "max_turns": 3,
        "tags": ["a", "b"],
        "opts": {"x": 1},
    }


def test_harnesses_null_entry_is_kept():
    dag = load_text("harnesses: {claude: null}\nsteps: [{run: echo}]\n").dag
    assert dag.harnesses == {"claude": None}


def test_root_shell():
    assert load_text("shell: bash -e\nsteps: [{run: echo}]\n").dag.shell == ("bash", "-e")


def test_defaults_of_an_empty_dag():
    dag = load_text("steps: [{run: echo}]\n", name="my-dag.yaml").dag
    assert (
        dag.name,
        dag.type,
        dag.max_active_steps,
        dag.max_output_size,
        dag.max_clean_up_time_sec,
    ) == ("my-dag", "graph", 0, 1048576, 5)


@pytest.mark.parametrize(
    "legacy",
    [
        "executor: {type: docker, config: {image: alpine, autoRemove: false, pull: never}}",
        "type: docker\nwith: {image: alpine, auto_remove: false, pull: never}",
        "action: docker.run\nwith: {image: alpine, auto_remove: false, pull: never}",
        "executor: {type: container, config: {image: alpine, autoRemove: false, pull: never}}",
    ],
)
def test_older_docker_spellings_become_a_step_container(legacy):
    s = step_of("run: echo hi\n" + legacy)
    assert (s.container.image, s.container.keep_container, s.container.pull_policy) == (
        "alpine",
        True,
        "never",
    )
    assert (s.with_, s.executor, s.type, s.action) == (None, None, None, None)


def test_docker_api_objects_map_to_container_fields():
    c = step_of(
        "run: x\nexecutor:\n  type: docker\n  config:\n    image: a\n"
        "    container: {Env: [A=1], WorkingDir: /w, User: '1000'}\n"
        "    host: {Binds: ['/h:/c:ro'], NetworkMode: none}"
    ).container
    assert (c.env, c.working_dir, c.user, c.volumes, c.network) == (
        (("A", "1"),),
        "/w",
        "1000",
        (Volume("/h", "/c", True),),
        "none",
    )


def test_command_type_executors_are_plain_steps():
    assert step_of("run: x\nexecutor: shell").container is None
    assert step_of("run: x\ntype: command").container is None


def test_action_exec_is_an_argv():
    step = step_of("action: exec\nwith: {command: ls, args: [-l, 2]}")
    assert (step.exec.command, step.exec.args, step.run) == ("ls", ("-l", "2"), None)
    assert step_of("exec: {command: ls, args: [-l, 2]}").exec == step.exec


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("exec: {command: ls}\nrun: ls", 'exec cannot be used together with "run"'),
        ("exec: {command: ls}\nshell: bash", 'exec cannot be used together with "shell"'),
        ("shell: direct\nrun: |\n  a\n  b", "shell: direct runs a program without a shell"),
        ("shell: direct\nscript: a", "shell: direct runs a program without a shell"),
        ("shell: direct\nrun: echo 'a", "cannot split"),
        ("run: []", "the command list is empty"),
        ("run: ['', ' ']", "the command list is empty"),
        ("run: [[a]]", "each command of the list is a string"),
        ("run: [{a: b, c: d}]", "each command of the list is a string"),
    ],
)
def test_run_lists_exec_and_direct_are_checked(text, error):
    found = [str(p) for p in problems("steps:\n  - " + text.replace("\n", "\n    ") + "\n")]
    assert any(error in p for p in found), found


def test_type_harness_is_a_harness_step():
    assert step_of("type: harness\nwith: {provider: claude, prompt: hi}").action == "harness.run"


def test_config_is_an_alias_of_with():
    s = step_of("action: harness.run\nconfig: {provider: claude, prompt: hi}")
    assert s.with_ == {"provider": "claude", "prompt": "hi"}


def test_with_and_config_together_is_an_error():
    issue = one_problem(
        "steps:\n  - action: harness.run\n    with: {provider: claude, prompt: hi}\n    config: {x: 1}\n"
    )
    assert issue.path == "steps[0].config"


def test_ids_and_names_are_trimmed_and_depends_are_not_as_dagu_does():
    """Dagu 2.x (conformance spec009): an id and a name are trimmed; a depends entry is
    matched as written, so ' a ' names no step."""
    dag = load_text(
        """
        steps:
          - {id: ' a ', name: ' Alpha ', run: x}
          - {id: b, depends: [a], run: x}
          - {id: c, depends: [Alpha, b], run: x}
        """
    ).dag
    assert [(s.id, s.key, s.depends) for s in dag.steps] == [
        ("a", "Alpha", None),
        ("b", "b", ("a",)),
        ("c", "c", ("Alpha", "b")),
    ]
    found = [
        str(p) for p in problems("steps:\n  - {id: a, run: x}\n  - {depends: ' a ', run: x}\n")
    ]
    assert any("' a '" in p or '" a "' in p for p in found), found


def test_shell_args_without_a_shell_is_an_error():
    problem = one_problem("steps: [{run: x, with: {shell_args: [-e]}}]\n")
    assert (problem.path, problem.message) == (
        "steps[0].with.shell_args",
        '"shell_args" needs "shell"',
    )


def test_a_run_list_that_looks_like_an_argv_is_warned_about():
    warnings = [str(i) for i in load_text("steps:\n  - run: [python3, -c, 'print(1)']\n").warnings]
    assert any("looks like one command's words" in w for w in warnings), warnings
    quiet = load_text("steps:\n  - run: [echo a, echo b]\n").warnings
    assert not [str(i) for i in quiet if "looks like" in str(i)]
