"""dagbox's argv against the real agent CLIs (docs/providers.md).

For each built-in provider whose CLI installs from npm or PyPI, the argv that
``dagbox dry-run --json`` prints for a step with a typical ``with:`` and a prompt
that opens with a ``- `` bullet list is run as a new user would run it: no key,
empty HOME, stdin closed, no network. The CLI must get past its argument parser
and fail where a real run without a credential fails (a login, an auth error, a
refused connection), never on an option, and must not sit waiting on a terminal.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.contract

PROMPT = "- list the files in this folder\n- then say done\n"

#: What an argument parser says when it refuses an argv, in the CLIs' own words.
PARSER_ERRORS = re.compile(
    r"unknown option|unexpected argument|unrecognized argument|Unknown argument|"
    r"invalid option|error: unexpected|Usage: |invalid thinking level|too many arguments",
    re.I,
)


@dataclass(frozen=True)
class Contract:
    options: dict[str, Any]
    #: Output that shows the CLI took the argv and went on to run the prompt.
    reached: str
    #: True: it ends by itself, without a credential, within BOUND seconds.
    ends: bool = True
    #: False: the CLI exits 0 all the same (aider); dagbox's trap fails it (test below).
    exits_nonzero: bool = True


#: Seconds a CLI may take to give up without a credential (the acceptance bound is 30).
BOUND = 30

CONTRACTS = {
    "claude": Contract(
        {"model": "sonnet", "max_turns": 3, "permission_mode": "acceptEdits"},
        r"Not logged in",
    ),
    # Offline, codex reconnects again and again; the echo of the prompt shows it took it.
    "codex": Contract(
        {"model": "gpt-5", "sandbox": "workspace-write"},
        r"^- list the files in this folder$",
        ends=False,
    ),
    "copilot": Contract(
        {"model": "gpt-5", "allow_all_tools": True}, r"No authentication information found"
    ),
    "opencode": Contract(
        {"model": "anthropic/claude-sonnet-4-5", "auto": True}, r"level=ERROR|UnknownError"
    ),
    "pi": Contract({"model": "sonnet", "thinking": "low"}, r"No API key found"),
    "gemini": Contract({"model": "gemini-2.5-pro", "yolo": True}, r"Please set an Auth method"),
    # cline (an optional-value flag just before the prompt) starts its task, then waits on
    # the network for ever; --verbose shows the task begin.
    "cline": Contract(
        {"thinking": True, "verbose": True, "model": "anthropic/claude-sonnet-4.5"},
        r"\[hook:agent_start\]",
        ends=False,
    ),
    "qwen": Contract({"model": "qwen3-coder-plus", "yolo": True}, r"No auth type is selected"),
    "droid": Contract(
        {"model": "claude-sonnet-4-5-20250929", "auto": "low"}, r"Authentication failed"
    ),
    # amp would wait for a browser login for ever: dagbox's trap stops it (test below).
    "amp": Contract({"dangerously_allow_all": True}, r"Starting login flow", ends=False),
    "aider": Contract(
        {"model": "gpt-4o", "yes_always": True, "no_git": True},
        r"not able to authenticate you",
        exits_nonzero=False,
    ),
}


def dry_run_argv(tmp_path: Path, provider: str, options: dict[str, Any]) -> list[str]:
    dag = tmp_path / "dag.yaml"
    step = {"id": "agent", "action": "harness.run", "with": {"provider": provider, **options}}
    step["with"]["prompt"] = PROMPT
    dag.write_text(yaml.safe_dump({"steps": [step]}))
    done = subprocess.run(
        [sys.executable, "-m", "dagbox", "dry-run", "--json", str(dag)],
        capture_output=True,
        text=True,
        check=True,
    )
    plan = json.loads(done.stdout)
    return plan["steps"][0]["tries"][0]["argv"]


@pytest.mark.parametrize("provider", sorted(CONTRACTS))
def test_the_real_cli_takes_dagboxs_argv(provider, tmp_path, run_cli):
    contract = CONTRACTS[provider]
    argv = dry_run_argv(tmp_path, provider, contract.options)
    assert PROMPT in argv or any(word.endswith("=" + PROMPT) for word in argv)
    ran = run_cli(argv, until=None if contract.ends else contract.reached, bound=BOUND + 15)
    assert not PARSER_ERRORS.search(ran.output), "the CLI refused dagbox's argv"
    assert re.search(contract.reached, ran.output, re.M), "the CLI did not get to the prompt"
    if contract.ends:
        assert ran.code is not None
        assert (ran.code != 0) == contract.exits_nonzero, f"exit {ran.code}"
        assert ran.seconds < BOUND, f"took {ran.seconds:.1f}s to give up"


def test_the_old_argv_shape_was_refused(tmp_path, run_cli):
    """What the catalogue used to render, for the record: a "- " prompt read as an option."""
    ran = run_cli(["claude", "-p", PROMPT], bound=BOUND)
    assert PARSER_ERRORS.search(ran.output) or "unknown option" in ran.output


def test_gemini_trusts_the_fresh_folder_so_yolo_holds(tmp_path, run_cli):
    argv = dry_run_argv(tmp_path, "gemini", {"yolo": True})
    ran = run_cli(argv, bound=BOUND)
    assert "YOLO mode is enabled" in ran.output
    assert "not trusted" not in ran.output
    plain = run_cli([word for word in argv if word != "--skip-trust"], bound=BOUND)
    assert "not trusted" in plain.output  # what dagbox's default prevents


@dataclass(frozen=True)
class DagboxRan:
    code: int  # dagbox's exit code
    seconds: float
    stderr: str
    left: list[str]  # the command lines still running in the namespace once dagbox returned
    events: list[dict[str, Any]]  # the attempt's journal
    record: dict[str, Any]  # run.json


def dagbox_run(tmp_path: Path, clis: Path, step: dict[str, Any], **root: Any) -> DagboxRan:
    """``dagbox run`` of one agent step with the real CLI, offline, in the CLIs' namespaces;
    then what is still running there (before the namespace, and all in it, goes)."""
    import time

    from tests.contract.conftest import _isolate

    dag = tmp_path / "dag.yaml"
    agent = {"id": "agent", "action": "harness.run", "timeout_sec": 120, **step}
    dag.write_text(yaml.safe_dump({"steps": [agent], **root}))
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{clis}:/usr/bin:/bin",
        "HOME": str(home),
        "DAGBOX_HOME": str(tmp_path / "records"),
        "LANG": "C.UTF-8",
    }
    dagbox = [sys.executable, "-m", "dagbox", "run", "-o", "quiet", "--run-id", "r1", str(dag)]
    script = '"$@"; echo "dagbox exit $?"; ps -eo args'
    began = time.monotonic()
    done = subprocess.run(
        [*_isolate(), "sh", "-c", script, "run", *dagbox],
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    seconds = time.monotonic() - began
    _, _, listing = done.stdout.partition("dagbox exit ")
    code, _, listing = listing.partition("\n")
    assert code.isdigit(), done.stdout + done.stderr
    journal = next((tmp_path / "records").rglob("attempts/*/1.jsonl"))
    return DagboxRan(
        code=int(code),
        seconds=seconds,
        stderr=done.stderr,
        # ps's header, ps itself and the shell that ran dagbox and ps are not left behind
        left=[line for line in listing.splitlines()[1:] if "ps -eo" not in line],
        events=[json.loads(line) for line in journal.read_text().splitlines()],
        record=json.loads(next((tmp_path / "records").rglob("run.json")).read_text()),
    )


@pytest.mark.parametrize(
    ("provider", "options", "error"),
    [
        ("amp", {}, "amp is not logged in"),  # it would wait for a browser login
        ("aider", {"model": "gpt-4o", "no_git": True}, "aider could not authenticate"),  # exit 0
        ("aider", {"no_git": True}, "would wait 5 minutes for a browser login"),
    ],
)
def test_a_missing_credential_fails_the_try_fast(tmp_path, clis, provider, options, error):
    step = {"with": {"provider": provider, "prompt": PROMPT, **options}}
    ran = dagbox_run(tmp_path, clis, step)
    finished = next(e for e in ran.events if e["event"] == "try.finished")
    assert ran.code == 1, ran.stderr
    assert finished["failure_class"] == "auth" and error in finished["error"]
    assert ran.seconds < BOUND, f"took {ran.seconds:.1f}s"


def test_cline_without_a_credential_is_ended_by_the_timeout_with_its_daemon(tmp_path, clis):
    """cline offline retries for ever, ignores SIGTERM and starts a hub daemon that outlives
    it: timeout_sec ends the try, and nothing of cline's is left once dagbox returns."""
    step = {"timeout_sec": 8, "with": {"provider": "cline", "prompt": PROMPT}}
    ran = dagbox_run(tmp_path, clis, step, max_clean_up_time_sec=2)
    assert ran.code == 1, ran.stderr
    assert "timed out" in ran.record["steps"][0]["error"]
    assert re.search(r"stopped \d+ process", ran.stderr)  # cline's hub daemon, left behind
    left = [line for line in ran.left if "cline" in line]
    assert left == [], f"left running: {left}"
