"""dagbox: an asyncio-native executor for Dagu-format YAML DAGs."""

__version__ = "0.1.0.dev0"
