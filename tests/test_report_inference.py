"""The report's intervals and tests, checked against scipy and statsmodels on known data."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from dagbox.report.inference import (
    fisher_exact,
    mcnemar_exact,
    newcombe_difference,
    paired_mean_interval,
    student_t_quantile,
    wilson,
)

COUNTS = [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (7, 23), (50, 100), (1, 500), (999, 1000)]


@pytest.mark.parametrize(("successes", "n"), COUNTS)
def test_wilson_matches_statsmodels(successes, n):
    low, high = proportion_confint(successes, n, alpha=0.05, method="wilson")
    assert wilson(successes, n) == pytest.approx((low, high), abs=1e-12)


def test_wilson_without_runs_is_absent():
    assert wilson(0, 0) is None


@pytest.mark.parametrize(
    ("better", "worse"), [(0, 0), (1, 0), (9, 2), (2, 9), (5, 5), (30, 12), (0, 25), (140, 160)]
)
def test_mcnemar_exact_matches_statsmodels(better, worse):
    table = [[7, better], [worse, 4]]
    assert mcnemar_exact(better, worse) == pytest.approx(
        mcnemar(table, exact=True).pvalue, rel=1e-12
    )


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2"),
    [(7, 10, 3, 12), (0, 5, 5, 5), (10, 10, 10, 10), (45, 100, 60, 100), (1, 30, 0, 40)],
)
def test_newcombe_matches_statsmodels(x1, n1, x2, n2):
    low, high = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff")
    assert newcombe_difference(x1, n1, x2, n2) == pytest.approx((low, high), abs=1e-12)


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2"),
    [
        (7, 10, 3, 12),
        (0, 5, 5, 5),
        (10, 10, 10, 10),
        (45, 100, 60, 100),
        (1, 30, 0, 40),
        (0, 0, 3, 4),
    ],
)
def test_fisher_exact_matches_scipy(x1, n1, x2, n2):
    expected = stats.fisher_exact([[x1, n1 - x1], [x2, n2 - x2]]).pvalue
    assert fisher_exact(x1, n1, x2, n2) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 10, 29, 30, 99, 1000, 12345])
@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995, 0.025])
def test_t_quantile_matches_scipy(df, p):
    assert student_t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-10)


@pytest.mark.parametrize("seed", range(6))
def test_paired_interval_matches_scipys_paired_t_test(seed):
    rnd = random.Random(seed)
    tasks = rnd.randint(2, 60)
    repeat = rnd.choice([1, 3, 5])
    # Per-task success rates, as a report pairs them: successes out of `repeat` runs.
    a = [rnd.randint(0, repeat) / repeat for _ in range(tasks)]
    b = [min(1.0, max(0.0, x + rnd.choice([-1, 0, 0, 1]) / repeat)) for x in a]
    if a == b:
        b[0] = 1 - b[0]
    mean, low, high = paired_mean_interval([y - x for x, y in zip(a, b, strict=True)])
    interval = stats.ttest_rel(b, a).confidence_interval(0.95)
    assert mean == pytest.approx(sum(b) / tasks - sum(a) / tasks, abs=1e-12)
    assert (low, high) == pytest.approx((interval.low, interval.high), rel=1e-9, abs=1e-12)


def test_paired_interval_needs_two_pairs_and_is_a_point_when_nothing_differs():
    assert paired_mean_interval([0.5]) is None
    assert paired_mean_interval([0.0, 0.0, 0.0]) == (0.0, 0.0, 0.0)


def test_t_quantile_refuses_probabilities_outside_zero_and_one():
    with pytest.raises(ValueError):
        student_t_quantile(1.0, 3)
    assert math.isclose(student_t_quantile(0.5, 3), 0.0, abs_tol=1e-12)


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2"), [(260, 520, 260, 520), (5000, 10000, 4800, 10000)]
)
def test_fisher_exact_stays_exact_for_thousands_of_runs(x1, n1, x2, n2):
    expected = stats.fisher_exact([[x1, n1 - x1], [x2, n2 - x2]]).pvalue
    assert fisher_exact(x1, n1, x2, n2) == pytest.approx(expected, rel=1e-9)


def test_a_rate_interval_is_cut_to_the_possible_and_absent_when_every_task_moved_alike():
    from dagbox.report.inference import paired_rate_interval

    assert paired_rate_interval([1.0, 1.0]) is None  # t would give [+1, +1]: no width
    assert paired_rate_interval([0.0, 0.0, 0.0]) is None
    mean, low, high = paired_rate_interval([1.0, 0.0, 0.0])
    assert (mean, low, high) == (pytest.approx(1 / 3), -1.0, 1.0)  # t: [-1.10, +1.77]
