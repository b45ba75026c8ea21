"""How often, and after how long, a failed attempt is tried again (``retry_policy``)."""

from __future__ import annotations

import math

from dagbox.engine.context import StepError
from dagbox.plan import RepeatPolicy, RetryPolicy
from dagbox.values import Scope

#: The longest wait between retries when ``max_interval_sec`` does not set one.
MAX_RETRY_DELAY = 24 * 3600


def retry_limit(policy: RetryPolicy | None, scope: Scope) -> int:
    """How many times a failed attempt may be tried again."""
    return whole_number(policy.limit, scope) if policy is not None else 0


def retry_delay(policy: RetryPolicy, attempt: int, scope: Scope) -> float:
    """``interval × backoff^(attempt-1)``, capped by ``max_interval_sec``, else by a day."""
    return backoff_delay(policy, attempt, scope)


def backoff_delay(
    policy: RetryPolicy | RepeatPolicy, n: int, scope: Scope, key: str = "retry_policy"
) -> float:
    """``interval × backoff^(n-1)``, capped by ``max_interval_sec``, else by a day.

    The power is computed in a way that cannot overflow (``backoff: 1e200`` raised
    OverflowError at the third attempt).
    """
    attempt = n
    interval = float(whole_number(policy.interval_sec, scope, key))
    backoff = policy.backoff
    factor = 2.0 if backoff is True else float(backoff) if backoff else 1.0
    cap = MAX_RETRY_DELAY if policy.max_interval_sec is None else policy.max_interval_sec
    if interval <= 0 or cap <= 0:
        return 0.0
    if math.log(interval) + (attempt - 1) * math.log(factor) >= math.log(cap):
        return float(cap)
    return interval * factor ** (attempt - 1)


def whole_number(value: int | str, scope: Scope, key: str = "retry_policy") -> int:
    """A count or a number of seconds that may be written as ``${...}``."""
    if isinstance(value, int):
        return value
    text = scope.value(value)
    try:
        return int(text)
    except ValueError:
        raise StepError(f"{key} value {value!r} is not a number ({text!r})") from None
