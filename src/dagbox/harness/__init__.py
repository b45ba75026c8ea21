"""Agent CLIs (``action: harness.run``): the provider catalog, argv rendering, reading
what a CLI prints, and the chain of tries of one attempt.

Only tries.py runs anything, and only through the :class:`~dagbox.runtimes.Runtime`
it is handed: nothing here knows where a process runs.
"""
