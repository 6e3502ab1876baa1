"""Reason codes and their metadata; see `catalog` and the one JSON file per code."""

from auditor.reasons.catalog import (
    ReasonInfo,
    Severity,
    codes,
    describe,
    is_parameterised,
    reason,
)

__all__ = ["ReasonInfo", "Severity", "codes", "describe", "is_parameterised", "reason"]
