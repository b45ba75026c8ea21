"""The shape of the code, checked: data flows one way (file -> spec -> plan -> engine ->
events -> sinks), and the centre stays small enough to read in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "dagbox"


def imports(path: Path) -> set[str]:
    """Every dagbox module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("dagbox")}


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("engine", ("dagbox.spec", "dagbox.compiler", "dagbox.runner", "dagbox.cli")),
        ("plan.py", ("dagbox.spec", "dagbox.engine", "dagbox.runtimes")),
        ("runtimes", ("dagbox.spec", "dagbox.engine", "dagbox.plan", "dagbox.harness")),
        ("harness", ("dagbox.spec", "dagbox.engine", "dagbox.plan")),
        ("spec", ("dagbox.engine", "dagbox.runtimes", "dagbox.compiler", "dagbox.runner")),
    ],
)
def test_no_import_runs_against_the_flow(package, forbidden):
    target = SRC / package
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    wrong = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in files
        for name in sorted(imports(path))
        if name.startswith(forbidden)
    ]
    assert wrong == []


def test_the_engine_runs_steps_only_through_the_runtimes_it_is_handed():
    """Of the runtime modules, the engine imports only the package (the protocols) and
    helpers.py (dagbox's own short host shells for backticks and preconditions)."""
    used = {
        name
        for path in (SRC / "engine").rglob("*.py")
        for name in imports(path)
        if name.startswith("dagbox.runtimes.") and name.count(".") == 2
    }
    modules = {name for name in used if (SRC / "runtimes" / f"{name.split('.')[2]}.py").exists()}
    assert modules <= {"dagbox.runtimes.helpers"}


def test_no_function_is_longer_than_a_screen():
    """No function body over 60 lines. A typer command's signature is the command's option
    table and is not counted: its body is."""
    long = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                body = node.body
                if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                    body = body[1:] or body  # the docstring is not code
                length = (node.end_lineno or 0) - body[0].lineno + 1
                if length > 60:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({length})")
    assert long == []


def test_the_scheduler_reads_in_one_sitting():
    assert len((SRC / "engine" / "scheduler.py").read_text().splitlines()) < 400
