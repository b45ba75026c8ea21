"""`dagbox report`: reading every results.jsonl dagbox ever wrote, the numbers on known
data (checked against scipy and statsmodels), comparisons, and the HTML page as a real
headless Chromium renders it."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from tests.browser import open_page, require_chromium
from tests.conftest import REPO
from tests.helpers import DAGBOX
from tests.test_bench import bench, write

#: Where a test leaves what a person should look at (CI keeps the folder).
ARTIFACTS = Path(os.environ.get("DAGBOX_TEST_ARTIFACTS", REPO / ".ci" / "artifacts"))
ARTIFACTS.mkdir(parents=True, exist_ok=True)


def report(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    if home is not None:
        env["DAGBOX_HOME"] = str(home)
    return subprocess.run(
        [*DAGBOX, "report", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def numbers(*args: str) -> dict:
    done = report(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def line(cell: str, task: str | None, ok: bool, n: int = 0, **extra) -> dict:
    """A result line as dagbox writes it today."""
    return {
        "key": f"{cell}-{task}-{n}",
        "cell": cell,
        "task": task,
        "params": {"P": cell.partition("=")[2], **({"TASK": task} if task else {})},
        "repeat": n,
        "status": "succeeded" if ok else "failed",
        "run_id": f"bench-{cell}-{task}-{n}",
        "duration_ms": 1000.0 + 10 * n,
        "queue_wait_ms": 0.0,
        "overhead_ms": 5.0,
        "failure_class": "ok" if ok else "exit_nonzero",
        "infra": False,
        "usage": None,
        "steps": [],
        **extra,
    }


def results(folder: Path, lines: list[dict], tail: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(x) + "\n" for x in lines) + tail
    (folder / "results.jsonl").write_text(text)
    return folder


def cell(document: dict, name: str) -> dict:
    return next(row for row in document["cells"] if row["cell"] == name)


# --- reading -------------------------------------------------------------------------------


def test_results_of_every_earlier_version_and_a_torn_last_line_are_read(tmp_path):
    first_version = {  # dagbox bench as it first wrote lines: no usage, node, dag_hash, record
        "key": "k1",
        "cell": "MODEL=a",
        "task": None,
        "params": {"MODEL": "a"},
        "repeat": 0,
        "status": "succeeded",
        "run_id": "bench-k1",
        "duration_ms": 812.5,
        "queue_wait_ms": 0.1,
        "overhead_ms": 20.0,
        "failure_class": "ok",
        "infra": False,
        "steps": [{"name": "s", "status": "succeeded"}],
    }
    with_usage = {**first_version, "key": "k2", "status": "failed", "failure_class": "timeout"}
    with_usage["usage"] = {"input_tokens": 100, "output_tokens": 20, "cost_usd": 0.5}
    from_a_cluster = {**first_version, "key": "k3", "node": "host/abc"}
    bare = {"key": "k4", "cell": "MODEL=a"}  # hand-trimmed: every other field absent
    out = results(
        tmp_path / "old",
        [first_version, with_usage, from_a_cluster, bare],
        tail='[1, 2]\n{"key": "k5", "cell": "MODEL=a", "sta',  # not an object; torn
    )
    document = numbers(str(out))
    row = cell(document, "MODEL=a")
    assert row["runs"] == 4 and row["succeeded"] == 2
    assert row["failures"] == {"timeout": 1, "unknown": 1}
    assert (
        row["usage_runs"] == 1
        and row["tokens_per_run"] == 120
        and row["cost_usd_per_success"] is None  # its one run with usage failed
    )
    assert row["nodes"] == {"host/abc": 1}
    assert row["duration_p50_ms"] == 812.5  # the line without a duration is left out, not 0
    assert document["outputs"][0]["unreadable_lines"] == 2
    text = report(str(out))
    assert text.returncode == 0, text.stderr
    assert "2 unreadable lines left out" in text.stdout


def test_an_output_without_results_is_a_usage_error_naming_it(tmp_path):
    done = report(str(tmp_path / "nowhere"))
    assert done.returncode == 2
    assert (
        done.stderr.strip().startswith(f"dagbox: {tmp_path / 'nowhere'} ")
        and "Traceback" not in done.stderr
    )
    out = results(tmp_path / "o", [line("P=a", "t1", True), line("P=b", "t1", False)])
    wrong = report(str(out), "--baseline", "P=c")
    assert wrong.returncode == 2 and "P=a, P=b" in wrong.stderr


# --- numbers on known data ----------------------------------------------------------------


def test_cells_get_wilson_intervals_and_pass_at_k_on_known_data(tmp_path):
    # 8 tasks x 3 repeats: cell P=a solves tasks 0-3 every time, task 4 once; P=b half as often.
    lines = []
    for t in range(8):
        for n in range(3):
            lines.append(line("P=a", f"t{t}", t < 4 or (t == 4 and n == 0), n))
            lines.append(line("P=b", f"t{t}", t < 2 or (t == 2 and n < 2), n))
    lines.append(line("P=b", "t7", False, 9, failure_class="infra_image", infra=True))
    document = numbers(str(results(tmp_path / "o", lines)))
    a, b = cell(document, "P=a"), cell(document, "P=b")
    assert (a["succeeded"], a["runs"]) == (13, 24)
    low, high = proportion_confint(13, 24, method="wilson")
    assert a["success_ci95"] == [round(low, 4), round(high, 4)]
    assert b["infra_failed"] == 1 and b["runs"] == 25  # infra: counted, left out of the rate
    low, high = proportion_confint(8, 24, method="wilson")
    assert b["success_rate"] == round(8 / 24, 4) and b["success_ci95"] == [
        round(low, 4),
        round(high, 4),
    ]
    # pass@3 per task, averaged: tasks 0-4 solved at least once in 3 tries -> 5/8.
    assert a["pass@1"] == round(13 / 24, 4) and a["pass@3"] == round(5 / 8, 4)
    assert a["pass@2"] == round((4 + (1 - 1 / 3)) / 8, 4)  # task 4: 1 - C(2,2)/C(3,2)
    assert b["failures_infra"] == {"infra_image": 1}


def test_a_comparison_pairs_tasks_and_matches_the_reference_tests(tmp_path):
    # One run per task: 30 tasks; the baseline solves 0-14, the other 8-24.
    lines = [line("P=a", f"t{t:02d}", t < 15) for t in range(30)]
    lines += [line("P=b", f"t{t:02d}", 8 <= t < 25) for t in range(30)]
    document = numbers(str(results(tmp_path / "o", lines)))
    (comparison,) = document["comparisons"]
    assert (comparison["baseline"], comparison["cell"]) == ("P=a", "P=b")
    assert comparison["paired"] and comparison["tasks"] == 30
    assert [f["task"] for f in comparison["better"]] == [f"t{t}" for t in range(15, 25)]
    assert [f["task"] for f in comparison["worse"]] == [f"t{t:02d}" for t in range(8)]
    assert comparison["better"][0] == {"task": "t15", "baseline": "0/1", "cell": "1/1"}
    # McNemar's exact test on the 2x2 table of paired outcomes (both, a only, b only, neither).
    table = [[7, 8], [10, 5]]
    assert comparison["p_value"] == round(mcnemar(table, exact=True).pvalue, 6)
    a = [1.0 if t < 15 else 0.0 for t in range(30)]
    b = [1.0 if 8 <= t < 25 else 0.0 for t in range(30)]
    interval = stats.ttest_rel(b, a).confidence_interval(0.95)
    assert comparison["difference"] == round(2 / 30, 4)
    assert comparison["ci95"] == [round(interval.low, 4), round(interval.high, 4)]


def test_runs_without_tasks_are_compared_unpaired(tmp_path):
    lines = [line("P=a", None, n < 12, n) for n in range(20)]
    lines += [line("P=b", None, n < 5, n) for n in range(20)]
    (comparison,) = numbers(str(results(tmp_path / "o", lines)))["comparisons"]
    assert comparison["paired"] is False and "Fisher" in comparison["method"]
    assert comparison["difference"] == round(5 / 20 - 12 / 20, 4)
    assert comparison["p_value"] == round(stats.fisher_exact([[5, 15], [12, 8]]).pvalue, 6)
    low, high = confint_proportions_2indep(5, 20, 12, 20, method="newcomb", compare="diff")
    assert comparison["ci95"] == [round(low, 4), round(high, 4)]


def test_two_outputs_compare_cell_by_cell_and_say_what_differs(tmp_path):
    image = {"img:1": "sha256:" + "1" * 64}
    before = [line("P=a", f"t{t}", t < 6, dag_hash="a" * 64, images=image) for t in range(10)]
    before = [{**x, "params": {**x["params"], "MODEL": "m1"}} for x in before]
    after = [
        line("P=a", f"t{t}", t < 9, dag_hash="b" * 64, images={"img:1": "sha256:" + "2" * 64})
        for t in range(10)
    ]
    after = [{**x, "params": {**x["params"], "MODEL": "m2"}} for x in after]
    one, two = results(tmp_path / "before", before), results(tmp_path / "after", after)
    document = numbers(str(one), str(two))
    assert [row["cell"] for row in document["cells"]] == [f"{one}/P=a", f"{two}/P=a"]
    (comparison,) = document["comparisons"]
    assert comparison["baseline"] == f"{one}/P=a" and comparison["cell"] == f"{two}/P=a"
    assert comparison["differs"]["dag_hash"] == {"baseline": ["a" * 64], "cell": ["b" * 64]}
    assert comparison["differs"]["images"]["img:1"]["cell"] == "sha256:" + "2" * 64
    assert comparison["differs"]["params"] == {"MODEL": {"baseline": "m1", "cell": "m2"}}
    text = report(str(one), str(two)).stdout
    assert f"{two}/P=a against {one}/P=a: +30.0 points" in text
    assert "differs  params: MODEL m1 → m2" in text
    assert "differs  dag_hash: aaaaaaaaaaaaaaaaaaa → bbbbbbbbbbbbbbbbbbb" in text


def test_the_terminal_report_shows_intervals_failure_classes_and_usage(tmp_path):
    usage = {"input_tokens": 900, "output_tokens": 100, "cost_usd": 0.02}
    lines = [line("P=a", f"t{t}", t % 2 == 0, usage=usage) for t in range(6)]
    lines += [line("P=b", f"t{t}", t < 5, usage=usage) for t in range(6)]
    done = report(str(results(tmp_path / "o", lines)))
    assert done.returncode == 0, done.stderr
    text = done.stdout
    head = text.splitlines()[0].split()
    assert head[:8] == ["cell", "runs", "ok", "agent✘", "infra✘", "success", "95%", "CI"]
    assert re.search(r"^P=a\s+6\s+3\s+3\s+0\s+50%\s+19-81%", text, re.M)
    assert "agent✘   exit_nonzero 3" in text
    assert "per run 1,000 tokens, $0.0200; per success 2,000 tokens, $0.0400" in text
    assert "P=b against P=a: +33.3 points [95% CI" in text


# --- a real bench, its report, and the page in Chromium -------------------------------------

CHARTS = 6  # success, pass@k, durations, failures, cost per success, differences


def test_the_html_report_of_a_real_bench_renders_in_chromium_offline(tmp_path, agents_on_path):
    require_chromium()
    dag = write(
        tmp_path,
        f"""
        params: [PROVIDER=claude, FAILS_ON=none]
        steps:
          - id: solve
            action: harness.run
            env: ['FAKE_AGENT_REPLAY={REPO}/tests/fixtures/usage/${{params.PROVIDER}}.jsonl']
            with: {{provider: '${{params.PROVIDER}}', prompt: 'go', usage: true}}
          - id: grade
            depends: solve
            command: test "$PROVIDER" != "$FAILS_ON"
        """,
    )
    tasks = tmp_path / "tasks.jsonl"
    fails = ["codex", "claude", "none", "codex", "none", "codex"]
    tasks.write_text(
        "".join(json.dumps({"id": f"t{i}", "FAILS_ON": f}) + "\n" for i, f in enumerate(fails))
    )
    out = tmp_path / "out"
    ran = bench(
        tmp_path,
        str(dag),
        "--tasks",
        str(tasks),
        "-m",
        "PROVIDER=claude,codex",
        "-n",
        "2",
        "--out",
        str(out),
        "-o",
        "quiet",
    )
    assert ran.returncode == 0, ran.stderr
    page = tmp_path / "report" / "index.html"
    page.parent.mkdir()
    done = report(str(out), "--html", str(page), home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    (comparison,) = json.loads(report(str(out), "--json").stdout)["comparisons"]
    assert (comparison["baseline"], comparison["cell"]) == ("PROVIDER=claude", "PROVIDER=codex")
    assert [f["task"] for f in comparison["better"]] == ["t1"]
    assert [f["task"] for f in comparison["worse"]] == ["t0", "t3", "t5"]

    html = page.read_text()
    links = re.findall(r"href='([^']+)'", html)
    assert len([x for x in links if x.endswith(".stdout")]) == 24  # one per run
    assert len([x for x in links if x.endswith(".jsonl")]) == 24  # the solve step's journal
    (base,) = re.findall(r'<base href="([^"]+)">', html)  # links are relative to it
    assert all((page.parent / unquote(base) / unquote(x)).is_file() for x in links), (
        "every link leads to a file"
    )
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", html), "nothing is fetched"

    shot = ARTIFACTS / "report-real-bench.png"
    seen = open_page(page, ready_js=READY, probe_js=PROBE, screenshot=shot)
    assert seen.console == [] and seen.requests == []
    assert seen.value["errors"] == [] and seen.value["drawn"] == CHARTS
    assert len(seen.value["marks"]) == CHARTS and all(n > 0 for n in seen.value["marks"]), (
        seen.value
    )
    assert shot.stat().st_size > 10_000


def test_a_report_of_ten_thousand_runs_is_under_5_mb_and_draws(tmp_path):
    require_chromium()
    rnd = random.Random(16)
    lines = [
        line(
            f"P={p}",
            f"task-{t:04d}",
            rnd.random() < 0.3 + 0.1 * p + (t % 10) / 20,
            n,
            usage={"input_tokens": 50, "cost_usd": 0.001},
        )
        for p in range(4)
        for t in range(500)
        for n in range(5)
    ]
    assert len(lines) == 10_000
    home = tmp_path / "home"
    for x in lines:  # a record per run, so that every mark carries its two links
        record = home / "runs" / "bench" / x["run_id"]
        (record / "logs").mkdir(parents=True)
        (record / "attempts" / "1-solve").mkdir(parents=True)
        (record / "logs" / "1-solve.1.stdout").touch()
        (record / "attempts" / "1-solve" / "1.jsonl").touch()
        step = {
            "name": "solve",
            "status": x["status"],
            "stdout_file": str(record / "logs" / "1-solve.1.stdout"),
        }
        run = {
            "run_id": x["run_id"],
            "dag": "bench",
            "file": "b.yaml",
            "status": x["status"],
            "params": {},
            "started_at": "",
            "steps": [step],
        }
        (record / "run.json").write_text(json.dumps(run))
    out = results(tmp_path / "big", lines)
    page = tmp_path / "big.html"
    done = report(str(out), "--html", str(page), home=home)
    assert done.returncode == 0, done.stderr
    assert page.read_text().count(".stdout'") == 10_000
    size = page.stat().st_size
    assert size < 5 * 1024 * 1024, f"{size / 1e6:.2f} MB"
    seen = open_page(
        page, ready_js=READY, probe_js=PROBE, screenshot=ARTIFACTS / "report-10k.png", timeout=120
    )
    assert seen.console == [] and seen.requests == []
    assert seen.value["drawn"] == CHARTS and all(n > 0 for n in seen.value["marks"]), seen.value


READY = "window.dagboxReport && window.dagboxReport.done === true"
#: Per chart, the marks Vega drew (data marks only: axes and legends have other roles).
PROBE = """({
  drawn: window.dagboxReport.drawn,
  errors: window.dagboxReport.errors,
  marks: Array.from(document.querySelectorAll('.chart')).map(
    (chart) => chart.querySelectorAll('svg g.role-mark > *').length),
})"""


def test_the_readme_comparison_of_two_providers_runs(tmp_path):
    """README's example, as written there (fewer repeats): both providers, their usage."""
    env = {"PATH": f"{REPO}/examples/bench/agents:{os.environ['PATH']}"}
    out = tmp_path / "compare"
    ran = bench(
        tmp_path,
        str(REPO / "examples/bench/compare.yaml"),
        "--tasks",
        str(REPO / "examples/bench/compare-tasks.jsonl"),
        "--matrix",
        "PROVIDER=claude,codex",
        "--concurrency",
        "8",
        "--out",
        str(out),
        "-o",
        "quiet",
        env=env,
    )
    assert ran.returncode == 0, ran.stderr
    document = numbers(str(out))
    claude, codex = cell(document, "PROVIDER=claude"), cell(document, "PROVIDER=codex")
    assert claude["runs"] == codex["runs"] == 16 and claude["infra_failed"] == 0
    assert claude["cost_usd_per_run"] == 0.037092 and codex["cost_usd_per_run"] is None
    assert codex["tokens_per_run"] == 16634 + 239
    (comparison,) = document["comparisons"]
    assert comparison["paired"] and comparison["tasks"] == 16


def test_tasks_one_side_lacks_are_counted_and_pass_at_k_never_falls(tmp_path):
    lines = [line("P=a", f"t{t}", t < 2) for t in range(10)]
    lines += [line("P=b", f"t{t}", True) for t in range(3)]
    # pass@k over a task whose third run infrastructure spoiled: k stops at 2.
    lines += [line("P=c", "hard", False, n) for n in range(3)]
    lines += [line("P=c", "easy", True, 0), line("P=c", "easy", True, 1)]
    lines.append(line("P=c", "easy", False, 2, failure_class="infra_image", infra=True))
    document = numbers(str(results(tmp_path / "o", lines)))
    b = next(c for c in document["comparisons"] if c["cell"] == "P=b")
    assert b["tasks"] == 3 and b["only_baseline"] == [f"t{t}" for t in range(3, 10)]
    text = report(str(tmp_path / "o")).stdout
    assert "unpaired 7 tasks with valid runs in P=a only" in text
    c = cell(document, "P=c")
    assert (c["pass@1"], c["pass@2"], c["pass@3"]) == (0.5, 0.5, None)


def test_cost_per_success_counts_the_runs_that_reported_it(tmp_path):
    lines = [
        line("P=a", f"t{t}", True, usage={"cost_usd": 1.0} if t < 5 else None) for t in range(10)
    ]
    lines.append(line("P=b", "t0", True, usage={"cost_usd": 0.5}))
    document = numbers(str(results(tmp_path / "o", lines)))
    a, b = cell(document, "P=a"), cell(document, "P=b")
    assert a["cost_usd_per_run"] == a["cost_usd_per_success"] == 1.0
    assert b["tokens_per_run"] is None  # no token counts: unknown, not 0


def test_an_output_given_twice_is_refused(tmp_path):
    out = results(tmp_path / "o", [line("P=a", "t1", True)])
    for twice in ([str(out), f"{out}/"], [str(out), str(out / "results.jsonl")]):
        done = report(*twice)
        assert done.returncode == 2 and "are the same results file" in done.stderr


def test_labels_that_look_like_markup_break_neither_the_page_nor_its_scripts(tmp_path):
    require_chromium()
    lines = [line("M=<!--<script>", f"</script><b>{t}", t < 3) for t in range(6)]
    lines += [line("M=b&amp;'\"", f"</script><b>{t}", t < 5) for t in range(6)]
    page = tmp_path / "odd.html"
    done = report(str(results(tmp_path / "o", lines)), "--html", str(page))
    assert done.returncode == 0, done.stderr
    assert "<b>0" not in page.read_text() and "&lt;b&gt;0" in page.read_text()
    seen = open_page(page, ready_js=READY, probe_js=PROBE)
    assert seen.console == [] and seen.value["drawn"] == 5, seen  # no usage: no cost chart
