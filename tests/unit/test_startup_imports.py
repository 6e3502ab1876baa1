"""What an audit's process loads before its run: libraries only some configurations use are
imported when they are first needed, not at start-up."""

from __future__ import annotations

import subprocess
import sys

# Modules an audit run imports before it starts (the CLI, the run, its adapters, alerts).
RUN = (
    "auditor.cli",
    "auditor.runtime",
    "auditor.audit",
    "auditor.alerts.service",
    "auditor.azure.clients",
)


def printed(code: str) -> list[str]:
    """The words `code` prints, run in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout.split()


def loaded_after_importing(modules: tuple[str, ...]) -> set[str]:
    """Every module loaded once `modules` are imported, in a fresh interpreter."""
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules)
    loaded = set(printed(code + "print('\\n'.join(sorted(sys.modules)))"))
    assert set(modules) <= loaded  # the probe saw the run's imports
    return loaded


def test_a_run_without_a_webhook_sink_does_not_load_httpx() -> None:
    loaded = {name.split(".")[0] for name in loaded_after_importing(RUN)}
    assert "httpx" not in loaded


def test_a_webhook_sink_loads_it_when_built() -> None:
    code = (
        "import sys\n"
        "from auditor.alerts.sinks.webhook import WebhookSink\n"
        "before = 'httpx' in sys.modules\n"
        "WebhookSink('https://example.invalid/hook', 'secret')\n"
        "print(before, 'httpx' in sys.modules)"
    )
    assert printed(code) == ["False", "True"]


def test_a_run_loads_the_log_analytics_management_sdk_only_to_read_a_workspace() -> None:
    # 40-70 ms that would come before the inventory's first request; the first workspace is
    # read while the settings are.
    assert "azure.mgmt.loganalytics" not in loaded_after_importing(RUN)
    code = (
        "import sys\n"
        "from azure.core.credentials import AccessToken\n"
        "from auditor.azure.clients import ArmClients\n"
        "from auditor.pacing import TokenBucketPacer\n"
        "class Credential:\n"
        "    def get_token(self, *scopes, **options): return AccessToken('t', 2**31)\n"
        "clients = ArmClients(Credential(), 'https://127.0.0.1:1', 'https://management.azure.com/',"
        " TokenBucketPacer(rate=1, burst=1))\n"
        "before = 'azure.mgmt.loganalytics' in sys.modules\n"
        "client = clients.workspaces('00000000-0000-0000-0000-000000000001')\n"
        "print(before, type(client).__name__)\n"
        "clients.close()"
    )
    assert printed(code) == ["False", "LogAnalyticsManagementClient"]
