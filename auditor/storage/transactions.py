"""Table Storage entity-group transactions: how rows are grouped (one partition each, at most
100 operations, a payload well under the 4 MiB limit, no row twice) and how one is sent
(`submit_transaction`). Shared by the audit store, the alert engine and the pruning."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.exceptions import DecodeError
from azure.core.pipeline.transport._base import _deserialize_response
from azure.core.rest import HttpRequest
from azure.core.serialization import AzureJSONEncoder
from azure.data.tables import (
    RequestTooLargeError,
    TableClient,
    TableTransactionError,
    UpdateMode,
)
from azure.data.tables._error import _decode_error, _validate_tablename_error
from azure.data.tables._generated._vendor import prep_if_match
from azure.data.tables._serialize import _add_entity_properties, _prepare_key
from azure.data.tables._table_batch import TableBatchOperations

MAX_OPERATIONS = 100  # Table Storage's limit per entity-group transaction
# A transaction may carry 4 MiB; the estimate below is JSON without the multipart envelope
# (about 1 KiB of headers per operation is added to it), so keep clear of the limit.
_MAX_PAYLOAD = 3 * 2**20
_ENVELOPE = 1024


class EncodedEntity(dict[str, Any]):
    """An entity with its request body, encoded once (`encoded`): grouping it into
    transactions measures that body, and an upsert sends it, rather than each encoding the
    entity again (a tenth of the storage stage's CPU). It must not change once encoded."""

    __slots__ = ("body",)

    def __init__(self, entity: Mapping[str, Any]) -> None:
        super().__init__(entity)
        self.body = _body(self)


def encoded(entities: Iterable[Mapping[str, Any]]) -> list[EncodedEntity]:
    return [EncodedEntity(e) for e in entities]


def _body(entity: Mapping[str, Any]) -> str:
    """An insert's or upsert's request body, as the SDK writes it."""
    return json.dumps(_add_entity_properties(entity), cls=AzureJSONEncoder)


def transactions(entities: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """Indexes of `entities` grouped the way Table Storage accepts a transaction: one partition,
    at most 100 operations and (estimated) 3 MiB, no row twice; in order within a partition."""
    groups: list[list[int]] = []
    open_groups: dict[str, tuple[list[int], set[str], int]] = {}
    for index, entity in enumerate(entities):
        partition, row = str(entity["PartitionKey"]), str(entity["RowKey"])
        size = (
            len(entity.body) if isinstance(entity, EncodedEntity) else _estimate(entity)
        ) + _ENVELOPE
        current = open_groups.get(partition)
        if current is not None:
            members, rows, total = current
            if len(members) < MAX_OPERATIONS and row not in rows and total + size <= _MAX_PAYLOAD:
                members.append(index)
                rows.add(row)
                open_groups[partition] = (members, rows, total + size)
                continue
        members = [index]
        groups.append(members)
        open_groups[partition] = (members, {row}, size)
    return groups


def _estimate(entity: Mapping[str, Any]) -> int:
    return len(json.dumps(entity, default=str))


# -- sending one transaction ---------------------------------------------------------------

# (operation, entity, keyword arguments), as `TableClient.submit_transaction` takes them.
Operation = tuple[str, Mapping[str, Any], Mapping[str, Any]]
_EOL = b"\r\n"


def submit_transaction(
    table: TableClient, operations: Iterable[Operation], **options: Any
) -> list[Mapping[str, Any]]:
    """`table.submit_transaction(operations, **options)`: the same operations, request,
    pipeline (credential, timeouts), result (each operation's response metadata: its `etag`)
    and errors (`TableTransactionError`, `RequestTooLargeError`, `HttpResponseError`).

    The SDK writes and reads the multipart bodies with Python's `email` package, and reads
    each answer's parts on a thread pool of its own: most of a large run's client CPU. Here
    the SDK still builds the operations' requests, or the first of each kind the rest are
    built from (`_requests`), and the multipart body around them is written and read as
    bytes; an answer's failing part is handed to the SDK's own error decoding."""
    client: Any = table  # the SDK's transaction path is not public API
    batch = TableBatchOperations(
        config=client._client._config,
        endpoint=f"{client.scheme}://{client._primary_hostname}",
        table_name=table.table_name,
        is_cosmos_endpoint=client._cosmos_endpoint,
    )
    requests = _requests(batch, operations)
    if not requests:
        return []
    boundary = f"batch_{uuid.uuid4()}"
    request = HttpRequest(
        "POST",
        f"{client.scheme}://{client._primary_hostname}/$batch",
        headers={
            "x-ms-version": client.api_version,
            "DataServiceVersion": "3.0",
            "MaxDataServiceVersion": "3.0;NetFx",
            "Content-Type": f"multipart/mixed; boundary={boundary}",
            "Accept": "application/json",
        },
        content=multipart_body(requests, boundary, f"changeset_{uuid.uuid4()}"),
    )
    response = client._client.send_request(request, stream=True, **options)
    if response.status_code == 413:
        raise _failure(response, table.table_name, too_large=True)
    if response.status_code != 202:
        raise _failure(response, table.table_name)
    try:
        parts = response_parts(response.headers.get("Content-Type", ""), response.read())
    except ValueError as exc:
        raise DecodeError(f"Table Storage answered a transaction with {exc}", response) from exc
    if len(parts) != len(requests) and all(200 <= p.status < 300 for p in parts):
        raise DecodeError(
            f"Table Storage answered {len(parts)} of a transaction's {len(requests)} operations",
            response,
        )
    for index, part in enumerate(parts):
        if part.status == 413:
            raise _failure(response, table.table_name, too_large=True)
        if not 200 <= part.status < 300:
            matching = requests[index] if index < len(requests) else request
            if isinstance(matching, _Request):
                matching = HttpRequest(
                    matching.method, matching.url, headers=dict(matching.headers)
                )
            failed = _deserialize_response(part.raw, matching)  # type: ignore[no-untyped-call]
            raise _failure(failed, table.table_name, error_type=TableTransactionError)
    return [{"etag": part.etag} if part.etag is not None else {} for part in parts]


@dataclass(frozen=True, slots=True)
class _Request:
    """What the multipart body holds of one operation's request."""

    method: str
    url: str
    headers: Mapping[str, str]
    content: str


# (method, headers, URL up to the keys) of the first request of its kind in a transaction.
_Template = tuple[str, dict[str, str], str]


def _requests(batch: TableBatchOperations, operations: Iterable[Operation]) -> list[Any]:
    """Each operation's request. The first of each kind the stores send in bulk (`_shape`: a
    create, an upsert, a replace or delete on an ETag...) is the SDK's own; the rest differ
    from it only in their keys, ETag and body, and are built from it: the SDK's request
    construction was a tenth of a large run's client CPU, and a third of its alerts'. Anything
    else (other options or match conditions) goes through the SDK."""
    templates: dict[str, _Template] = {}
    out: list[Any] = []
    cosmos = bool(getattr(batch, "_is_cosmos_endpoint", False))
    for operation in operations:
        kind, entity, options = operation if len(operation) == 3 else (*operation, {})
        shape = _shape(kind, options, cosmos=cosmos)
        template = templates.get(shape) if shape else None
        if template is None:
            batch.add_operation(operation)
            request = batch.requests[-1]
            out.append(request)
            if shape and "?" not in request.url:
                templates[shape] = _template(shape, request)
            continue
        batch._verify_partition_key(entity)  # the SDK's check: one partition, keys present
        method, headers, prefix = template
        url = prefix
        if shape != "create":
            partition, row = _prepare_key(entity["PartitionKey"]), _prepare_key(entity["RowKey"])
            url += f"(PartitionKey='{quote(partition, safe='')}',RowKey='{quote(row, safe='')}')"
        if shape in _ON_ETAG:
            headers = {**headers, "If-Match": str(prep_if_match(options["etag"], _IF_NOT_MODIFIED))}
        if shape in _WITHOUT_BODY:
            body = ""
        else:
            body = entity.body if isinstance(entity, EncodedEntity) else _body(entity)
        out.append(_Request(method, url, headers, body))
    return out


_IF_NOT_MODIFIED = MatchConditions.IfNotModified
_ON_ETAG = frozenset({"replace-on-etag", "delete-on-etag"})
_WITHOUT_BODY = frozenset({"delete", "delete-on-etag"})


def _shape(kind: str, options: Mapping[str, Any], *, cosmos: bool = False) -> str | None:
    """The kind of an operation whose request only its keys, ETag and body tell apart from
    another of its kind; None for the rest."""
    kind, options = kind.lower(), dict(options)
    etag = options.get("etag")
    on_etag = options.get("match_condition") == _IF_NOT_MODIFIED and isinstance(etag, str) and etag
    if kind == "create" and not options:
        return "create"
    if kind == "upsert" and options == {"mode": UpdateMode.REPLACE}:
        return "upsert"
    if kind == "upsert" and options == {"mode": UpdateMode.MERGE} and not cosmos:
        return "merge"  # Cosmos DB's is a POST the SDK rewrites
    if kind == "update" and on_etag and options.keys() == {"mode", "etag", "match_condition"}:
        return "replace-on-etag" if options["mode"] == UpdateMode.REPLACE else None
    if kind == "delete" and not options:
        return "delete"
    if kind == "delete" and on_etag and options.keys() == {"etag", "match_condition"}:
        return "delete-on-etag"
    return None


def _template(shape: str, request: Any) -> _Template:
    url: str = request.url
    prefix = url if shape == "create" else url.split("(PartitionKey=", 1)[0]
    return request.method, dict(request.headers), prefix


def _failure(
    response: Any,
    table_name: str,
    *,
    too_large: bool = False,
    error_type: type[Exception] | None = None,
) -> Exception:
    """The error the SDK raises for `response`, decoded by the SDK."""
    if too_large:
        return _decode_error(  # type: ignore[no-untyped-call,no-any-return]
            response,
            error_message="The transaction request was too large",
            error_type=RequestTooLargeError,
        )
    decoded: Exception = _decode_error(response, error_type=error_type)  # type: ignore[no-untyped-call]
    _validate_tablename_error(decoded, table_name)  # type: ignore[no-untyped-call]
    return decoded


def multipart_body(requests: Sequence[Any], boundary: str, changeset: str) -> bytes:
    """One change set of `requests` in a batch body, as azure-core writes it."""
    now = formatdate(usegmt=True)
    out = [
        b"--" + boundary.encode(),
        b"Content-Type: multipart/mixed; boundary=" + changeset.encode(),
        b"",
    ]
    for index, part in enumerate(requests):
        content = part.content
        body = content.encode() if isinstance(content, str) else bytes(content or b"")
        headers = {**part.headers, "x-ms-date": now, "Date": now}
        if body:
            headers["Content-Length"] = str(len(body))
        out += [
            b"--" + changeset.encode(),
            b"Content-Type: application/http",
            b"Content-Transfer-Encoding: binary",
            b"Content-ID: " + str(index).encode(),
            b"",
            f"{part.method} {part.url} HTTP/1.1".encode(),
            *(f"{name}: {value}".encode() for name, value in headers.items()),
            b"",
            body,
        ]
    out += [b"--" + changeset.encode() + b"--", b"", b"--" + boundary.encode() + b"--", b""]
    return _EOL.join(out)


@dataclass(frozen=True)
class Part:
    """One operation's answer in a batch response: its status, ETag, and the raw HTTP text."""

    status: int
    etag: str | None
    raw: bytes


def response_parts(content_type: str, body: bytes) -> list[Part]:
    """The operations' answers of a batch response body (`multipart/mixed`, change sets
    nested), in order. Raises ValueError when the body is not what the service sends."""
    boundary = _boundary(content_type)
    if boundary is None:
        raise ValueError(f"a batch response that is not multipart: {content_type!r}")
    parts: list[Part] = []
    for chunk in _split(body, boundary):
        headers, _, payload = chunk.partition(_EOL + _EOL)
        kind = _header(headers, b"content-type") or ""
        if kind.startswith("multipart/mixed"):
            parts += response_parts(kind, payload)
        elif kind.startswith("application/http"):
            parts.append(_part(payload))
        else:
            raise ValueError(f"a batch response part of type {kind!r}")
    return parts


def _boundary(content_type: str) -> str | None:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "boundary" and value:
            return value.strip('"')
    return None


def _split(body: bytes, boundary: str) -> list[bytes]:
    delimiter = b"--" + boundary.encode()
    chunks = body.split(delimiter)
    if len(chunks) < 2:
        raise ValueError(f"a batch response without its boundary {boundary!r}")
    # Before the first delimiter: the preamble; after the closing one ("--"): the epilogue.
    inner = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        inner.append(chunk.removeprefix(_EOL).removesuffix(_EOL))
    return inner


def _part(payload: bytes) -> Part:
    head, _, _ = payload.partition(_EOL + _EOL)
    status_line, _, headers = head.partition(_EOL)
    fields = status_line.split(b" ", 2)
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
        raise ValueError(f"a batch response part with status line {status_line[:80]!r}")
    return Part(int(fields[1]), _header(headers, b"etag"), payload)


def _header(block: bytes, name: bytes) -> str | None:
    for line in block.split(_EOL):
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip().decode("latin-1")
    return None
