"""dagbox: an asyncio-native executor for Dagu-format YAML DAGs."""

__version__ = "0.1.0.dev0"

#: Ctrl-Cs that reached ``dagbox`` before a run or bench watched its own signals. CPython
#: drops a KeyboardInterrupt raised inside an import lock's callback ("Exception ignored
#: in ..."), so one pressed while dagbox imports can vanish; the count cannot, and the
#: run's signal watcher acts on it as soon as it starts (see __main__.py).
early_interrupts = 0
