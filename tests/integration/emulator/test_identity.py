"""Managed identity through the real azure-identity credential, and audience checks."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from auditor.runtime import build_credential
from emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

ARM = "https://management.azure.com/.default"
LOGS = "https://api.loganalytics.io/.default"
WORKSPACE_QUERY = "/v1/workspaces/aaaaaaaa-0000-0000-0000-000000000001/query"


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def client(emu: RunningEmulator) -> httpx.Client:
    return httpx.Client(base_url=emu.base_url, verify=emu.ssl_context())


def test_default_credential_gets_jwt_for_each_audience(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    arm = credential.get_token(ARM)
    logs = credential.get_token(LOGS)
    assert arm.token.count(".") == 2
    assert claims(arm.token)["aud"] == "https://management.azure.com"
    assert claims(logs.token)["aud"] == "https://api.loganalytics.io"
    assert claims(arm.token)["oid"] == emu.world.identity.principal_id
    assert arm.expires_on > time.time() + 3600
    assert emu.world.requests(api="identity")[-1].status == 200


def test_user_assigned_identity_is_another_caller(emu: RunningEmulator) -> None:
    token = ManagedIdentityCredential(client_id="my-uami").get_token(ARM).token
    assert claims(token)["oid"] != emu.world.identity.principal_id


def test_token_endpoint_refuses_missing_or_wrong_header(emu: RunningEmulator) -> None:
    params = {"api-version": "2019-08-01", "resource": "https://management.azure.com/"}
    with client(emu) as http:
        missing = http.get("/msi/token", params=params)
        wrong = http.get("/msi/token", params=params, headers={"X-IDENTITY-HEADER": "nope"})
        old = http.get(
            "/msi/token",
            params={**params, "api-version": "2017-09-01"},
            headers={"X-IDENTITY-HEADER": emu.identity_header},
        )
        ok = http.get(
            "/msi/token", params=params, headers={"X-IDENTITY-HEADER": emu.identity_header}
        )
    assert missing.status_code == 400 and "statusCode" in missing.json()
    assert wrong.status_code == 401
    assert old.status_code == 400
    body = ok.json()
    assert set(body) >= {"access_token", "expires_on", "resource", "token_type"}
    assert body["expires_on"].isdigit() and body["token_type"] == "Bearer"


def test_management_token_is_refused_by_log_analytics(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    token = credential.get_token(ARM).token
    with client(emu) as http:
        r = http.post(
            WORKSPACE_QUERY,
            json={"query": "ContainerRegistryLoginEvents | take 1"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "InvalidTokenError"


def test_arm_refuses_missing_wrong_audience_and_forged_tokens(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    logs_token = credential.get_token(LOGS).token
    head, payload, _ = credential.get_token(ARM).token.split(".")
    forged = f"{head}.{payload}.{base64.urlsafe_b64encode(b'x' * 32).decode().rstrip('=')}"
    url = "/subscriptions?api-version=2016-06-01"
    with client(emu) as http:
        none = http.get(url)
        wrong = http.get(url, headers={"Authorization": f"Bearer {logs_token}"})
        bad = http.get(url, headers={"Authorization": f"Bearer {forged}"})
        garbage = http.get(url, headers={"Authorization": b"Bearer \xff\xfe..."})
    assert none.status_code == 401 and none.json()["error"]["code"] == "AuthenticationFailed"
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    assert "WWW-Authenticate" in wrong.headers
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert garbage.status_code == 401


def test_a_token_endpoint_that_never_answers_times_out(
    fresh_emulator: Callable[..., RunningEmulator],
) -> None:
    """The product's credential gives up on a hanging token endpoint after its read timeout,
    not the SDK's 300 s per attempt."""
    fresh_emulator(faults=[{"kind": "slow", "delay_s": 60, "api": "identity"}])
    credential = build_credential(read_timeout=0.5)
    with pytest.raises(ClientAuthenticationError, match="Read timed out"):
        credential.get_token("https://management.azure.com/.default")
