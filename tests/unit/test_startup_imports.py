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


def loaded_after_importing(modules: tuple[str, ...]) -> set[str]:
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules)
    code += "print('\\n'.join(sorted({name.split('.')[0] for name in sys.modules})))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return set(out.stdout.split())


def test_a_run_without_a_webhook_sink_does_not_load_httpx() -> None:
    loaded = loaded_after_importing(RUN)
    assert "auditor" in loaded and "azure" in loaded  # the probe saw the run's imports
    assert "httpx" not in loaded


def test_a_webhook_sink_loads_it_when_built() -> None:
    code = (
        "import sys\n"
        "from auditor.alerts.sinks.webhook import WebhookSink\n"
        "before = 'httpx' in sys.modules\n"
        "WebhookSink('https://example.invalid/hook', 'secret')\n"
        "print(before, 'httpx' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["False", "True"]
