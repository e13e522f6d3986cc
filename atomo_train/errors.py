"""Errors a trainer user reads: each names the config key at fault and says what to do."""
from __future__ import annotations


class ConfigError(ValueError):
    """A bad or inconsistent configuration value, or data that a config key points at.

    `key` is the dotted TOML key (`data.frames`); `str()` reads "config key 'data.frames': <what>, <what to do>".
    """

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"config key '{key}': {message}")

    def __reduce__(self):  # picklable across DataLoader workers / processes
        return (type(self), (self.key, self.message))
