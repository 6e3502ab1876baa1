"""Local Azure emulator for acr-auditor: managed identity, ARM (subscriptions, container
registries, Resource Graph, diagnostic settings, Log Analytics workspaces) and the Log Analytics
query API over HTTPS on 127.0.0.1, in the real REST shapes the Azure SDKs speak.

Start it with ``python -m emulator --scenario FILE`` or, in-process,
``emulator.testing.start_emulator(...)``. The contract between the core and the Log Analytics
part is docs/emulator-contract.md.
"""
