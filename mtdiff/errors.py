"""The project's error types that every layer raises (imported by `config` and `methods`,
so it imports nothing of the project itself)."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the fix."""
