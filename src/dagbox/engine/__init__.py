"""The engine: a run of a Plan (scheduler.py), the parts it uses for one step (env,
commands, conditions, attempt, output, retry), and the events it emits (events.py).

It reads plan.py and nothing from spec/. Steps run only through the runtimes it is
handed (runtimes/); the one runtime module it imports is helpers.py, the short host
shells that evaluate backticks and preconditions for dagbox itself.
"""
