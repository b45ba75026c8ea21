"""Dagu 2.x semantics, learnt from Dagu's conformance fixtures and Go tests (nothing copied):
each test is a small DAG that meant something else in dagbox before."""

from __future__ import annotations

from tests.helpers import run_text


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
