"""Confidence intervals and tests for success rates, in plain Python.

Everything here is exact arithmetic or a closed form, so a report is the same on every
machine and needs no scientific stack; tests/test_report_inference.py checks each
function against scipy and statsmodels. Why these methods, and not others, is in
docs/report.md ("How the numbers are made").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from statistics import NormalDist, fmean, stdev

#: The two-sided 95% normal quantile, 1.959964...
Z95 = NormalDist().inv_cdf(0.975)


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson's score interval for a proportion: unlike the textbook p ± z·SE it stays
    inside [0, 1] and keeps its coverage at 0/n and n/n, which small agent benches hit."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(better: int, worse: int) -> float:
    """McNemar's exact test: the two-sided p-value of ``better`` against ``worse``
    discordant pairs under "either way is as likely" (a binomial with p = 1/2)."""
    n = better + worse
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(better, worse) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def newcombe_difference(
    x1: int, n1: int, x2: int, n2: int, z: float = Z95
) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval for p1 - p2 of two independent samples (his
    method 10, 1998), built from the two Wilson intervals."""
    first, second = wilson(x1, n1, z), wilson(x2, n2, z)
    if first is None or second is None:
        return None
    p1, p2 = x1 / n1, x2 / n2
    (l1, u1), (l2, u2) = first, second
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return low, high


def fisher_exact(x1: int, n1: int, x2: int, n2: int) -> float:
    """Fisher's exact test, two-sided: the probability, with the margins fixed, of a
    table no more likely than the one seen (scipy's definition, same tolerance)."""
    successes, total = x1 + x2, n1 + n2
    if total == 0:
        return 1.0

    def weight(a: int) -> int:  # hypergeometric numerator of a successes in the first sample
        return math.comb(n1, a) * math.comb(n2, successes - a)

    seen = weight(x1)
    low, high = max(0, successes - n2), min(n1, successes)
    tables = [weight(a) for a in range(low, high + 1)]
    # w <= seen * (1 + 1e-7), in integers: the weights outgrow floats past a few hundred runs.
    p = Fraction(
        sum(w for w in tables if w * 10**7 <= seen * (10**7 + 1)), math.comb(total, successes)
    )
    return float(min(p, Fraction(1)))


def paired_mean_interval(
    differences: Sequence[float], confidence: float = 0.95
) -> tuple[float, float, float] | None:
    """Mean of paired differences and its Student t interval (a paired t-interval).

    The pairs are tasks: each task's success rate under one side minus under the other.
    Runs of one task are not independent of each other, so the task is the unit, as in
    clustered standard errors. None with fewer than two pairs.
    """
    n = len(differences)
    if n < 2:
        return None
    mean = fmean(differences)
    half = student_t_quantile((1 + confidence) / 2, n - 1) * stdev(differences) / math.sqrt(n)
    return mean, mean - half, mean + half


def paired_rate_interval(differences: Sequence[float]) -> tuple[float, float, float] | None:
    """:func:`paired_mean_interval` for differences of success rates: cut to [-1, 1], the
    only possible values, and None when every pair differs by the same amount (the t
    interval would have no width: a claim of certainty no sample of tasks can make)."""
    found = paired_mean_interval(differences)
    if found is None or len(set(differences)) == 1:
        return None
    mean, low, high = found
    return mean, max(low, -1.0), min(high, 1.0)


def student_t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (bisection on the CDF)."""
    if not 0 < p < 1:
        raise ValueError("p must be in (0, 1)")
    if p < 0.5:
        return -student_t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        if _t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low <= 1e-15 * max(1.0, high):
            break
    return (low + high) / 2


def _t_cdf(t: float, df: float) -> float:
    """P(T <= t) for t >= 0."""
    x = df / (df + t * t)
    return 1 - 0.5 * _incomplete_beta(x, df / 2, 0.5)


def _incomplete_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction
    (modified Lentz), on whichever side converges fast."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(x, a, b) / a
    return 1 - front * _beta_fraction(1 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 1000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1) < 1e-16:
            break
    return result
