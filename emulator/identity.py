"""Managed identity: the App Service token endpoint (protocol 2019-08-01, what
azure-identity's ManagedIdentityCredential/MSAL call when IDENTITY_ENDPOINT and IDENTITY_HEADER
are set) and bearer-token checks for the other APIs.

Tokens are JWT-shaped (header.payload.signature), HMAC-SHA256 signed with a key made per process,
carrying `aud` (the requested resource without ``/.default``), `oid`, `tid`, `appid`, `iat`,
`nbf` and `exp` (wall clock: the SDKs compare it with ``time.time()``). A token is only valid
for its audience, as in Azure: a management token sent to Log Analytics gets a 401.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from emulator.web import ApiError, json_response

TOKEN_API_VERSIONS = ("2019-08-01",)
TOKEN_LIFETIME_S = 24 * 3600  # managed identity tokens live about a day
ARM_AUDIENCE = "https://management.azure.com"
LOGS_AUDIENCE = "https://api.loganalytics.io"
# ARM accepts tokens for either of its two resource URIs.
_ALIASES = {
    ARM_AUDIENCE: frozenset(
        {"https://management.azure.com", "https://management.core.windows.net"}
    ),
    LOGS_AUDIENCE: frozenset({"https://api.loganalytics.io"}),
}
_SYSTEM_IDENTITY = "acr-auditor-emulator/system-assigned"
# One signing key per process run: tokens are refused by any other emulator process, but a
# credential's cached token stays valid across the emulators one test process starts.
_PROCESS_KEY = secrets.token_bytes(32)


def normalize_audience(value: str) -> str:
    """`https://management.azure.com/.default`, `.../` and `HTTPS://Management.azure.com`
    all name the same audience."""
    aud = value.strip()
    if aud.endswith("/.default"):
        aud = aud[: -len("/.default")]
    return aud.rstrip("/").lower()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TokenAuthority:
    """Issues and verifies this run's tokens. The system-assigned identity has a stable
    object id, so activity records and request logs are predictable in tests; a
    user-assigned identity (``client_id``/``object_id``/``mi_res_id`` query parameter) gets
    its own, which lets tests act as several callers."""

    def __init__(
        self, tenant_id: str, identity_header: str | None = None, key: bytes | None = None
    ) -> None:
        self.tenant_id = tenant_id
        self.identity_header = identity_header or secrets.token_urlsafe(24)
        self._key = key or _PROCESS_KEY
        self.principal_id = str(uuid.uuid5(uuid.NAMESPACE_URL, _SYSTEM_IDENTITY + "/object"))
        self.client_id = str(uuid.uuid5(uuid.NAMESPACE_URL, _SYSTEM_IDENTITY + "/client"))

    def identity_for(
        self,
        client_id: str | None = None,
        object_id: str | None = None,
        mi_res_id: str | None = None,
    ) -> tuple[str, str]:
        """(object id, client id) of the requested identity."""
        selector = client_id or object_id or mi_res_id
        if not selector:
            return self.principal_id, self.client_id
        base = f"{_SYSTEM_IDENTITY}/user/{selector.lower()}"
        oid = object_id or str(uuid.uuid5(uuid.NAMESPACE_URL, base + "/object"))
        cid = client_id or str(uuid.uuid5(uuid.NAMESPACE_URL, base + "/client"))
        return oid, cid

    def issue(
        self,
        resource: str,
        *,
        oid: str | None = None,
        client_id: str | None = None,
        lifetime_s: int = TOKEN_LIFETIME_S,
        now: float | None = None,
    ) -> tuple[str, int]:
        """(token, expires_on epoch seconds)."""
        issued = int(now if now is not None else time.time())
        expires = issued + lifetime_s
        claims = {
            "aud": normalize_audience(resource),
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": issued,
            "nbf": issued - 300,
            "exp": expires,
            "oid": oid or self.principal_id,
            "sub": oid or self.principal_id,
            "appid": client_id or self.client_id,
            "tid": self.tenant_id,
            "idtyp": "app",
            "ver": "1.0",
        }
        header = {"typ": "JWT", "alg": "HS256", "kid": "acr-auditor-emulator"}
        signing_input = (
            _b64(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64(json.dumps(claims, separators=(",", ":")).encode())
        )
        sig = hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(sig)}", expires

    def verify(self, token: str, now: float | None = None) -> dict[str, Any]:
        """The token's claims; raises TokenError (code as ARM reports it)."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("InvalidAuthenticationToken", "The access token is invalid.")
        try:
            sig = _unb64(parts[2])
            claims = json.loads(_unb64(parts[1]))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise TokenError("InvalidAuthenticationToken", "The access token is invalid.") from None
        expected = hmac.new(
            self._key, f"{parts[0]}.{parts[1]}".encode("ascii", "replace"), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(sig, expected) or not isinstance(claims, dict):
            raise TokenError(
                "InvalidAuthenticationToken",
                "The access token is invalid: its signature could not be verified.",
            )
        current = now if now is not None else time.time()
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= current:
            raise TokenError(
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
            )
        return claims


def _world(request: Request) -> Any:
    return request.app.state.world


async def token_endpoint(request: Request) -> Response:
    """GET /msi/token?api-version=2019-08-01&resource=... with X-IDENTITY-HEADER."""
    authority: TokenAuthority = _world(request).identity
    header = request.headers.get("x-identity-header")
    if header is None:
        raise ApiError(
            400, "BadRequest", "The X-IDENTITY-HEADER header is required.", shape="identity"
        )
    if not hmac.compare_digest(header.encode(), authority.identity_header.encode()):
        raise ApiError(
            401, "Unauthorized", "The X-IDENTITY-HEADER value is not valid.", shape="identity"
        )
    params = request.query_params
    api_version = params.get("api-version")
    if api_version not in TOKEN_API_VERSIONS:
        raise ApiError(
            400,
            "BadRequest",
            f"Unsupported api-version {api_version!r}; supported: {', '.join(TOKEN_API_VERSIONS)}.",
            shape="identity",
        )
    resource = params.get("resource", "").strip()
    if not resource:
        raise ApiError(
            400, "BadRequest", "Required query parameter 'resource' is missing.", shape="identity"
        )
    oid, client_id = authority.identity_for(
        params.get("client_id"),
        params.get("object_id") or params.get("principal_id"),
        params.get("mi_res_id"),
    )
    token, expires_on = authority.issue(resource, oid=oid, client_id=client_id)
    return json_response(
        {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id,
        }
    )


def _refuse(audience: str, code: str, message: str, tenant_id: str) -> ApiError:
    if audience == LOGS_AUDIENCE:
        return ApiError(
            401,
            "InvalidTokenError",
            "The provided authentication is not valid for this resource",
            shape="logs",
            inner={"code": code, "message": message},
            headers={"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
        )
    challenge = (
        f'Bearer authorization_uri="https://login.microsoftonline.com/{tenant_id}", '
        f'error="invalid_token", error_description="{message}"'
    )
    return ApiError(401, code, message, shape="arm", headers={"WWW-Authenticate": challenge})


def require_token(request: Request, audience: str) -> str:
    """The caller's object id, or raise the API's 401 (ARM: AuthenticationFailed /
    InvalidAuthenticationToken / InvalidAuthenticationTokenAudience / ExpiredAuthenticationToken;
    Log Analytics: InvalidTokenError). Also records the caller for the request log."""
    wanted = normalize_audience(audience)
    authority: TokenAuthority = _world(request).identity
    tenant = authority.tenant_id
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if not auth:
        raise _refuse(
            wanted,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
            tenant,
        )
    if scheme.lower() != "bearer" or not token.strip():
        raise _refuse(
            wanted,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            tenant,
        )
    try:
        claims = authority.verify(token.strip())
    except TokenError as exc:
        raise _refuse(wanted, exc.code, exc.message, tenant) from None
    allowed = _ALIASES.get(wanted, frozenset({wanted}))
    aud = claims.get("aud")
    if not isinstance(aud, str) or normalize_audience(aud) not in allowed:
        raise _refuse(
            wanted,
            "InvalidAuthenticationTokenAudience",
            f"The access token has been obtained for wrong audience or resource '{aud}'. "
            f"It should exactly match with one of the allowed audiences "
            f"{', '.join(repr(a) for a in sorted(allowed))}.",
            tenant,
        )
    oid = str(claims.get("oid"))
    request.state.caller = oid
    return oid
