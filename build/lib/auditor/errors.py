"""Errors the auditor raises on purpose, so callers can tell them from bugs."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is missing or invalid.

    `setting` names what is wrong (an environment variable or a `Policy` field) so the message
    tells the operator where to look; `problem` says what is wrong without echoing the value,
    which may be a secret.
    """

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem
