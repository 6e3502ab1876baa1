"""Emulated Log Analytics: the query API (routes), the data behind it (store, events) and
KQL validation with Microsoft's Kusto parser (kusto_parser). See docs/emulator-contract.md."""

from emulator.loganalytics.kusto_parser import (
    Diagnostic,
    KustoValidator,
    KustoValidatorError,
    get_validator,
)

__all__ = ["Diagnostic", "KustoValidator", "KustoValidatorError", "get_validator"]
