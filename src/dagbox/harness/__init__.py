"""Agent CLIs (``action: harness.run``): the provider catalog and argv rendering.

Pure data and pure functions: nothing here starts a process.
"""
