"""No input, however broken, makes loading raise anything but DagError.

Two generators: structured documents built from the format's own key
vocabulary (so they get deep into the builder and the rules), and byte-level
mutations of real DAG files (so they exercise the YAML reader). Every document
that loads is also planned, as ``dagbox dry-run`` would.
"""

import os
import random
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from dagbox.compiler import compile
from dagbox.spec import DagError, load
from dagbox.spec.build import _info
from dagbox.spec.model import Container, ContinueOn, Dag, HarnessDef, RetryPolicy, Step
from tests.conftest import EXAMPLE_DAGS

EXAMPLES = int(os.environ.get("DAGBOX_HYPOTHESIS_EXAMPLES", "300"))
#: One seed for the session, shown in pytest's header: DAGBOX_HYPOTHESIS_SEED=N repeats a run.
SEED = int(os.environ.get("DAGBOX_HYPOTHESIS_SEED") or random.randrange(2**32))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

VOCAB = sorted(
    {
        *(
            k
            for cls in (Dag, Step, Container, RetryPolicy, ContinueOn, HarnessDef)
            for k in _info(cls).fields
        ),
        "provider",
        "prompt",
        "stdin",
        "fallback",
        "image",
        "exec",
        "condition",
        "expected",
        "init",
        "exit",
        "success",
        "failure",
        "claude",
        "codex",
        "harness.run",
        "graph",
        "chain",
        "retryPolicy",
        "maxActiveSteps",
        "schedule",
        "call",
        "docker",
        "config",
        "type",
    }
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 100),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(VOCAB),
    st.text(max_size=12),
    st.sampled_from(
        ["${params.X}", "re:(", "a:/b", "/x:/y:ro", "K=V", "never", "always", "\n", "-1"]
    ),
)
KEYS = st.one_of(st.sampled_from(VOCAB), st.text(min_size=1, max_size=8))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=25,
)
STEP = st.dictionaries(
    st.sampled_from([*sorted(_info(Step).fields), "command", "dir"]), VALUES, max_size=6
)
DOCUMENT = st.fixed_dictionaries(
    {"steps": st.one_of(st.lists(STEP, max_size=5), VALUES)},
    optional={
        k: VALUES
        for k in (
            "name",
            "type",
            "env",
            "params",
            "container",
            "harnesses",
            "harness",
            "handler_on",
        )
    },
)


def check(text: bytes | str) -> None:
    try:
        loaded = load(Path("fuzz.yaml"), text)
    except DagError as exc:
        assert exc.issues, "a DagError must carry its problems"
        for issue in exc.issues:
            assert issue.line >= 1 and issue.col >= 1
            str(issue)
        return
    compile(loaded.dag)


@seed(SEED)
@SETTINGS
@given(DOCUMENT)
def test_structured_documents_never_crash(document):
    check(yaml.safe_dump(document, allow_unicode=True, sort_keys=False))


@seed(SEED)
@SETTINGS
@given(st.dictionaries(KEYS, VALUES, max_size=8))
def test_arbitrary_mappings_never_crash(document):
    check(yaml.safe_dump(document, allow_unicode=True))


CORPUS = [p.read_bytes() for p in EXAMPLE_DAGS]
NOISE = [
    b":",
    b"-",
    b"\n",
    b" ",
    b"  ",
    b"{",
    b"}",
    b"[",
    b"]",
    b"&a",
    b"*a",
    b"\x00",
    b"\xff",
    b"'",
    b'"',
    b"#",
    b"${",
    b"\t",
    b"<<: ",
]


@seed(SEED)
@SETTINGS
@given(
    st.sampled_from(CORPUS),
    st.lists(
        st.tuples(st.floats(0, 1), st.integers(0, 3), st.sampled_from(NOISE)),
        min_size=1,
        max_size=6,
    ),
)
def test_mutated_files_never_crash(original, edits):
    data = bytearray(original)
    for where, how, noise in edits:
        at = int(where * len(data))
        if how == 0:
            data[at:at] = noise
        elif how == 1:
            del data[at : at + len(noise)]
        else:
            data[at : at + len(noise)] = noise
    check(bytes(data))


@seed(SEED)
@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(data):
    check(data)


HARNESS_DEF = st.fixed_dictionaries(
    {
        "binary": st.one_of(
            st.text(max_size=8), st.sampled_from(["agent", "./bin/x", "/usr/bin/env"])
        )
    },
    optional={
        "prefix_args": st.lists(st.text(max_size=6), max_size=3),
        "prompt_mode": st.sampled_from(["arg", "flag", "stdin", "pipe"]),
        "prompt_flag": st.sampled_from(["--prompt", "-p", ""]),
        "prompt_position": st.sampled_from(["before_flags", "after_flags", "middle"]),
        "flag_style": st.sampled_from(["gnu_long", "single_dash", "x"]),
        "option_flags": st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3),
    },
)
WITH = st.dictionaries(
    st.one_of(
        st.sampled_from(["provider", "prompt", "stdin", "fallback", "model", "max_turns", "usage"]),
        st.text(max_size=8),
    ),
    st.one_of(
        VALUES,
        st.sampled_from(["claude", "codex", "mine", "aider", "${params.P}"]),
        st.lists(
            st.dictionaries(
                st.sampled_from(["provider", "model", "fallback"]), SCALARS, max_size=3
            ),
            max_size=3,
        ),
    ),
    max_size=7,
)


@seed(SEED)
@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(["mine", "claude", "x"]), st.one_of(st.none(), HARNESS_DEF), max_size=2
    ),
    WITH,
    st.one_of(st.none(), WITH),
)
def test_harness_definitions_and_with_rendering_never_crash(harnesses, with_, defaults):
    """The `with:`/`harnesses:` renderer: load, then plan every try as dry-run does."""
    document = {
        "params": ["P=claude"],
        "harnesses": harnesses,
        "steps": [{"id": "a", "action": "harness.run", "with": with_}],
    }
    if defaults is not None:
        document["harness"] = defaults
    check(yaml.safe_dump(document, allow_unicode=True))
