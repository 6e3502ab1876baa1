"""Adapters that talk to Azure: they fetch facts and nothing else (no judgement here)."""
