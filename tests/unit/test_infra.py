"""The deployment (infra/, azure.yaml, .funcignore) against the code, offline.

The Bicep files are read with pycep (the parser checkov uses): every setting the code reads is
wired as an app setting (and documented), alert credentials are Key Vault references, nothing
holds an account key, and the custom roles are built from infra/operations.json, whose
operations are exactly the Azure SDK calls found in auditor/ (tests/integration/
test_infra_operations.py checks the same list against the requests a real audit sends).
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.monitor.query import LogsQueryClient
from pycep import BicepParser

from auditor import kql
from auditor.azure.clients import ArmClients
from auditor.settings import SETTING_NAMES, Settings

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
OPERATIONS = json.loads((INFRA / "operations.json").read_text(encoding="utf-8"))
ROLES = ("reader", "workspaceReader", "remediator")
# Settings the code reads that the deployment must NOT set, and why.
DELIBERATELY_UNSET = {
    "AzureWebJobsStorage": "a connection string carries an account key; the deployment uses "
    "identity-based host storage (AzureWebJobsStorage__accountName, __credential, __clientId)",
}
ALERT_CREDENTIALS = (
    "AUDITOR_ALERT_WEBHOOK_URL",
    "AUDITOR_ALERT_WEBHOOK_SECRET",
    "AUDITOR_ALERT_TEAMS_URL",
    "AUDITOR_ALERT_SLACK_URL",
)
# Built-in roles far broader than the auditor needs; none may be assigned.
BROAD_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader",
    "749f88d5-cbae-40b8-bcfc-e573ddc772fa": "Monitoring Contributor",
    "43d0d8ad-25c7-4714-9337-8ba259a9fe05": "Monitoring Reader",
    "92aaf0da-9dab-42b6-94a3-d43ce8d16293": "Log Analytics Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
}


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@functools.cache
def parser() -> BicepParser:
    return BicepParser()  # builds the grammar: once


@functools.cache
def parsed(name: str) -> dict[str, Any]:
    result: dict[str, Any] = parser().parse(file_path=INFRA / name)
    return result


def accessor(node: Any) -> list[str]:
    """`a.b.c` as pycep nests it, flattened to ['a', 'b', 'c']; [] for anything else."""
    if isinstance(node, str):
        return [node]
    operator = node.get("operator") if isinstance(node, dict) else None
    if not operator or operator.get("type") != "property_accessor":
        return []
    operands = operator["operands"]
    return accessor(operands["operand_1"]) + accessor(operands["operand_2"])


def resource(name: str, symbol: str) -> tuple[dict[str, Any], Any]:
    """(config, condition) of one resource, unwrapping `= if (...) {...}`."""
    config = parsed(name)["resources"][symbol]["config"]
    if "condition" in config and "config" in config:
        return config["config"], config["condition"]
    return config, None


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


# ------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    document = parsed(str(path.relative_to(INFRA)))
    assert document["resources"] or document.get("modules")


def test_the_expected_files_exist() -> None:
    names = {str(p.relative_to(INFRA)) for p in bicep_files()}
    assert {
        "main.bicep",
        "management-group.bicep",
        "modules/app.bicep",
        "modules/audit-access.bicep",
        "modules/workspace-access.bicep",
        "modules/events.bicep",
    } <= names


# ------------------------------------------------------------------------------ settings


def app_setting_names() -> dict[str, Any]:
    """Every app setting the deployment sets, by name, with its value expression."""
    main = parsed("main.bicep")
    app = parsed("modules/app.bicep")
    # main.bicep's AUDITOR_* settings reach the module whole (plus the user's overrides)...
    passed = main["modules"]["app"]["config"]["params"]["auditorSettings"]["function"]
    assert passed["type"] == "union"
    assert list(passed["parameters"].values()) == ["defaultSettings", "settingOverrides"]
    # ...which turns them into name/value pairs next to its own, on the site itself.
    loop = app["variables"]["auditorAppSettings"]["value"]
    assert loop["loop_type"]["detail"]["object_name"] == "auditorSettings"
    site, _ = resource("modules/app.bicep", "site")
    concat = site["properties"]["siteConfig"]["appSettings"]["function"]
    assert concat["type"] == "concat"
    assert list(concat["parameters"].values()) == ["platformAppSettings", "auditorAppSettings"]

    settings: dict[str, Any] = dict(main["variables"]["defaultSettings"]["value"])
    for entry in app["variables"]["platformAppSettings"]["value"]:
        assert entry["name"] not in settings, f"{entry['name']} is set twice"
        settings[entry["name"]] = entry["value"]
    return settings


def test_every_setting_the_code_reads_is_an_app_setting() -> None:
    settings = app_setting_names()
    missing = set(SETTING_NAMES) - set(settings) - set(DELIBERATELY_UNSET)
    assert not missing, f"settings the code reads but infra/ does not set: {sorted(missing)}"
    for name in DELIBERATELY_UNSET:
        assert name not in settings, f"{name}: {DELIBERATELY_UNSET[name]}"
    # Identity-based host storage instead of a connection string.
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert accessor(settings["AzureWebJobsStorage__clientId"]) == [
        "identity",
        "properties",
        "clientId",
    ]
    assert accessor(settings["AZURE_CLIENT_ID"]) == ["identity", "properties", "clientId"]
    assert settings["AUDITOR_STORAGE"] == ""


def test_the_settings_that_carry_parameters_are_wired_to_them() -> None:
    settings = app_setting_names()
    parameters = parsed("main.bicep")["parameters"]
    assert settings["AUDITOR_SCHEDULE"] == "schedule"
    assert settings["AUDITOR_ACCEPTED_DESTINATIONS"] == "acceptedDestinations"
    assert settings["AUDITOR_REQUIRED_CATEGORIES"] == "requiredCategories"
    for name in ("auditedSubscriptions", "managementGroupId", "acceptedWorkspaces", "schedule"):
        assert name in parameters
    # Every main.bicep parameter says what it is for.
    for name, spec in parameters.items():
        decorators = {d["type"] for d in spec.get("decorators", [])}
        assert "description" in decorators, f"parameter {name} has no @description"


def evaluate(node: Any, parameters: dict[str, Any]) -> str | None:
    """The value a setting gets with every parameter at its default; None when it depends on
    the deployment (resource names, the subscription)."""
    if isinstance(node, bool):
        return "true" if node else "false"
    if isinstance(node, str):
        if node in parameters:
            return evaluate(parameters[node].get("default"), parameters)
        return node
    if isinstance(node, int):
        return str(node)
    operator = node.get("operator") if isinstance(node, dict) else None
    if operator and operator["type"] == "conditional":
        operands = operator["operands"]
        condition = evaluate(operands["condition"], parameters)
        if condition in ("true", "false"):
            branch = operands["true_value" if condition == "true" else "false_value"]
            return evaluate(branch, parameters)
    function = node.get("function") if isinstance(node, dict) else None
    if function and function["type"] == "environment":
        return {"resourceManager": "https://management.azure.com/"}.get(function["property_name"])
    return None


def test_the_default_settings_of_a_deployment_pass_validation() -> None:
    parameters = parsed("main.bicep")["parameters"]
    values = {
        name: evaluate(value, parameters)
        for name, value in parsed("main.bicep")["variables"]["defaultSettings"]["value"].items()
    }
    known = {name: value for name, value in values.items() if value is not None}
    assert len(known) >= 20, values
    environ = {
        **known,
        "AUDITOR_SUBSCRIPTIONS": "00000000-0000-0000-0000-000000000001",
        "AzureWebJobsStorage__accountName": "stacrabcdefghijklm",
        "AzureWebJobsStorage__tableServiceUri": "https://stacrabcdefghijklm.table.core.windows.net/",
    }
    settings = Settings.from_env(environ)
    assert settings == Settings.from_env(
        {
            "AUDITOR_SUBSCRIPTIONS": "00000000-0000-0000-0000-000000000001",
            "AzureWebJobsStorage__tableServiceUri": "https://stacrabcdefghijklm.table.core.windows.net",
        }
    ), "a default deployment must behave as the code defaults"


def test_alert_credentials_are_key_vault_references_with_the_identity() -> None:
    settings = app_setting_names()
    for name in ALERT_CREDENTIALS:
        value = settings[name]
        text = json.dumps(value)
        assert "@Microsoft.KeyVault(SecretUri=" in text, name
        assert "properties.secretUri" in text, name
        assert name not in parsed("main.bicep")["variables"]["defaultSettings"]["value"]
    site, _ = resource("modules/app.bicep", "site")
    assert accessor(site["properties"]["keyVaultReferenceIdentity"]) == ["identity", "id"]
    for symbol in ("webhookUrlSecret", "webhookSecretSecret", "teamsUrlSecret", "slackUrlSecret"):
        secret, condition = resource("modules/app.bicep", symbol)
        assert condition is not None, f"{symbol} must exist only when its value is given"
        assert secret["properties"]["contentType"] == "text/plain"  # CKV_AZURE_114 skip
    for symbol in ("webhookUrlReader", "webhookSecretReader", "teamsUrlReader", "slackUrlReader"):
        assignment, _ = resource("modules/app.bicep", symbol)
        assert assignment["scope"].endswith("Secret"), "secrets are readable one by one"
    for parameter in ("alertWebhookUrl", "alertWebhookSecret", "alertTeamsUrl", "alertSlackUrl"):
        for name in ("main.bicep", "modules/app.bicep"):
            decorators = {d["type"] for d in parsed(name)["parameters"][parameter]["decorators"]}
            assert "secure" in decorators, f"{name}: {parameter} must be @secure()"


def test_every_setting_is_in_the_sample_and_the_readme() -> None:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))
    assert set(SETTING_NAMES) <= set(sample["Values"])
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/settings.md" in readme
    assert "docs/deploy.md" in readme
    missing = [name for name in SETTING_NAMES if f"`{name}`" not in readme]
    assert not missing, f"README.md does not name these settings: {missing}"


# ------------------------------------------------------------------------------ no keys


def test_nothing_holds_an_account_key() -> None:
    for path in bicep_files():
        text = path.read_text(encoding="utf-8")
        assert "listKeys" not in text, path
        assert "AccountKey" not in text, path
        assert "primaryKey" not in text, path
    storage, _ = resource("modules/app.bicep", "storage")
    assert storage["properties"]["allowSharedKeyAccess"] is False
    assert storage["properties"]["allowBlobPublicAccess"] is False
    assert storage["properties"]["minimumTlsVersion"] == "TLS1_2"
    insights, _ = resource("modules/app.bicep", "insights")
    assert insights["properties"]["DisableLocalAuth"] is True
    settings = app_setting_names()
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].endswith(";Authorization=AAD")


def test_what_checkov_cannot_see_inside_conditional_resources() -> None:
    vault, condition = resource("modules/app.bicep", "vault")
    assert condition == "hasAlertSecrets"
    assert vault["properties"]["enableSoftDelete"] is True  # CKV_AZURE_42 skip
    assert vault["properties"]["enablePurgeProtection"] is True  # CKV_AZURE_110 skip
    assert vault["properties"]["enableRbacAuthorization"] is True
    # CKV_AZURE_43 skip: 'stacr' + uniqueString (13 lower-case characters) fits 3-24 [a-z0-9].
    storage, _ = resource("modules/app.bicep", "storage")
    assert storage["name"] == "stacr${resourceToken}"
    token = parsed("main.bicep")["variables"]["resourceToken"]["value"]["function"]
    assert token["type"] == "to_lower"
    assert token["parameters"]["string_to_change"]["function"]["type"] == "unique_string"
    assert re.fullmatch(r"[a-z0-9]{3,24}", "stacr" + "a" * 13)


# ------------------------------------------------------------------------------ hosting


def test_flex_consumption_python_311_with_a_user_assigned_identity() -> None:
    plan, _ = resource("modules/app.bicep", "plan")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True
    site, _ = resource("modules/app.bicep", "site")
    assert site["kind"] == "functionapp,linux"
    assert site["identity"]["type"] == "UserAssigned"
    assert site["properties"]["httpsOnly"] is True
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    authentication = config["deployment"]["storage"]["authentication"]
    assert authentication["type"] == "UserAssignedIdentity"
    assert accessor(authentication["userAssignedIdentityResourceId"]) == ["identity", "id"]
    # The Flex plan refuses these; the runtime comes from functionAppConfig.
    settings = app_setting_names()
    for forbidden in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"):
        assert forbidden not in settings
    # azd finds the app by this tag (azure.yaml service name).
    assert parsed("modules/app.bicep")["parameters"]["serviceName"]["default"] == "auditor"


def test_azure_yaml_deploys_this_project_as_the_function_app() -> None:
    document = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))
    assert document["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert document["services"] == {
        "auditor": {"project": ".", "language": "python", "host": "function"}
    }


def test_azd_parameters_exist_in_main_bicep() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))
    given = set(parameters["parameters"])
    declared = parsed("main.bicep")["parameters"]
    assert given <= set(declared), sorted(given - set(declared))
    required = {name for name, spec in declared.items() if spec.get("default") is None}
    assert required <= given, sorted(required - given)


FUNCIGNORED = ("tests/", "emulator/", "bench/", "node_modules/", ".venv/", "scripts/", "docs/")
PACKAGED = ("function_app.py", "host.json", "requirements.txt", "auditor/", "auditor/audit.py")


def test_funcignore_keeps_development_files_out_of_the_package() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for entry in FUNCIGNORED:
        assert entry in patterns, f".funcignore must exclude {entry}"
    assert "package.json" in patterns and "package-lock.json" in patterns

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p.rstrip("/")) or path.startswith(p) for p in patterns)

    for path in PACKAGED:
        assert not ignored(path), f".funcignore must keep {path}"


# ------------------------------------------------------------------------------ rights


def operations_by_role() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {role: [] for role in ROLES}
    for operation in OPERATIONS["operations"]:
        for role in operation["roles"]:
            out[role].append(operation["action"])
    return out


def test_operations_json_roles_list_exactly_their_operations() -> None:
    actions = [o["action"] for o in OPERATIONS["operations"]]
    assert len(actions) == len(set(actions))
    assert set(OPERATIONS["roles"]) == set(ROLES)
    for role, expected in operations_by_role().items():
        assert OPERATIONS["roles"][role]["actions"] == expected, role
        assert OPERATIONS["roles"][role]["description"]
    for operation in OPERATIONS["operations"]:
        assert operation["why"], operation["action"]
        assert "*" not in operation["action"], "no wildcards"
        for request in operation["requests"]:
            re.compile(request["path"])
    reader = set(OPERATIONS["roles"]["reader"]["actions"])
    assert set(OPERATIONS["roles"]["workspaceReader"]["actions"]) <= reader
    # Nothing the auditor holds by default can change anything.
    assert all(a.endswith("/read") for a in reader)
    assert OPERATIONS["roles"]["remediator"]["actions"] == [
        "Microsoft.Insights/diagnosticSettings/write"
    ]


def role_definitions() -> Iterator[tuple[str, str, dict[str, Any], Any]]:
    for path in bicep_files():
        name = str(path.relative_to(INFRA))
        for symbol, spec in parsed(name)["resources"].items():
            if spec["type"] == "Microsoft.Authorization/roleDefinitions":
                config, condition = resource(name, symbol)
                yield name, symbol, config, condition


def test_custom_roles_are_built_from_operations_json_only() -> None:
    found: dict[str, set[str]] = {}
    for name, symbol, config, condition in role_definitions():
        variables = parsed(name)["variables"]
        load = variables["operations"]["value"]["function"]
        assert load["type"] == "load_json_content"
        assert load["parameters"]["file_path"] == "operations.json"
        (permission,) = config["properties"]["permissions"]
        path = accessor(permission["actions"])
        assert path[:2] == ["operations", "roles"] and path[3:] == ["actions"], (name, symbol)
        role = path[2]
        assert role in ROLES
        assert accessor(config["properties"]["description"]) == [
            "operations",
            "roles",
            role,
            "description",
        ]
        for key in ("notActions", "dataActions", "notDataActions"):
            assert permission.get(key, []) == [], (name, symbol, key)
        if role == "remediator":
            assert "enableRemediation" in json.dumps(condition), "remediation only when asked"
        found.setdefault(role, set()).add(name)
    assert found == {
        "reader": {"main.bicep", "management-group.bicep"},
        "remediator": {"main.bicep", "management-group.bicep"},
        "workspaceReader": {"main.bicep"},
    }


def test_remediation_rights_are_assigned_only_when_switched_on() -> None:
    _, condition = resource("modules/audit-access.bicep", "remediatorAssignment")
    assert "remediatorRoleName" in json.dumps(condition)
    passed = parsed("main.bicep")["modules"]["subscriptionAccess"]["config"]
    text = json.dumps(passed)
    assert "enableRemediation" in text
    _, condition = resource("management-group.bicep", "remediatorAssignment")
    assert condition == "enableRemediation"
    assert parsed("main.bicep")["parameters"]["enableRemediation"]["default"] is False


def test_no_broad_built_in_role_is_assigned_anywhere() -> None:
    for path in bicep_files():
        text = path.read_text(encoding="utf-8").lower()
        for role_id, role in BROAD_ROLES.items():
            assert role_id not in text, f"{path.name} assigns {role}"


def test_data_rights_are_scoped_to_the_auditor_resources() -> None:
    scopes = {
        "blobOwner": "storage",
        "tableContributor": "storage",
        "queueContributor": "queue",
        "metricsPublisher": "insights",
        "webhookUrlReader": "webhookUrlSecret",
    }
    for symbol, scope in scopes.items():
        assignment, _ = resource("modules/app.bicep", symbol)
        assert assignment["scope"] == scope, symbol
        assert assignment["properties"]["principalType"] == "ServicePrincipal"
    _, condition = resource("modules/app.bicep", "queueContributor")
    assert "alertQueue" in json.dumps(condition), "queue rights only with a queue"
    workspace, _ = resource("modules/workspace-access.bicep", "assignment")
    assert workspace["scope"] == "workspace"


def code_sdk_calls() -> set[str]:
    """Azure SDK operations called in auditor/: `<ArmClients factory>.<group>.<method>` for ARM
    (e.g. `monitor.diagnostic_settings.list`) and `logs.<method>` for LogsQueryClient."""
    factories = {
        name
        for name, member in inspect.getmembers(ArmClients, inspect.isfunction)
        if not name.startswith("_") and name != "close"
    }
    logs_methods = {
        name
        for name, _ in inspect.getmembers(LogsQueryClient, inspect.isfunction)
        if name.startswith("query")
    }
    found: set[str] = set()
    for path in (ROOT / "auditor").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound = _bound_clients(tree, factories)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            if node.func.attr in logs_methods:
                found.add(f"logs.{node.func.attr}")
                continue
            chain: list[str] = []
            current: ast.expr = node.func
            while isinstance(current, ast.Attribute):
                chain.append(current.attr)
                current = current.value
            chain.reverse()
            factory = _client_factory(current, factories, bound)
            if factory is not None and chain:
                found.add(".".join([factory, *chain]))
    return found


def _bound_clients(tree: ast.AST, factories: set[str]) -> dict[str, str]:
    """Variable -> factory, e.g. graph = clients.resource_graph()."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr in factories
        ):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    bound[target.id] = node.value.func.attr
    return bound


def _client_factory(base: ast.expr, factories: set[str], bound: dict[str, str]) -> str | None:
    """The ArmClients factory an attribute chain starts from: called in place or bound before."""
    if (
        isinstance(base, ast.Call)
        and isinstance(base.func, ast.Attribute)
        and base.func.attr in factories
    ):
        return base.func.attr
    if isinstance(base, ast.Name):
        return bound.get(base.id)
    return None


def test_every_azure_call_in_the_code_maps_to_a_role_operation() -> None:
    mapped = {call for o in OPERATIONS["operations"] for call in o["sdk"]}
    in_code = code_sdk_calls()
    assert in_code, "the scan found no Azure SDK call: it is broken"
    unmapped = in_code - mapped
    assert not unmapped, (
        f"auditor/ calls {sorted(unmapped)}, which infra/operations.json does not map to an "
        "Azure operation: add it there (and its role) or the auditor gets 403 in Azure"
    )
    unused = mapped - in_code
    assert not unused, f"operations.json maps {sorted(unused)}, which auditor/ no longer calls"

    def role_sdk(role: str) -> set[str]:
        return {call for o in OPERATIONS["operations"] if role in o["roles"] for call in o["sdk"]}

    # Every call is a read the auditor holds, but remediation's writes (its own role, granted
    # only with enableRemediation).
    assert in_code == role_sdk("reader") | role_sdk("remediator")
    assert role_sdk("remediator") == {"monitor.diagnostic_settings.create_or_update"}


def test_query_rights_cover_exactly_the_tables_the_kql_reads() -> None:
    tables = {
        value
        for name, value in vars(kql).items()
        if name.endswith("_TABLE") and not name.startswith("COL_") and isinstance(value, str)
    }
    assert tables == {
        "ContainerRegistryLoginEvents",
        "ContainerRegistryRepositoryEvents",
        "AzureActivity",
    }
    granted = {
        o["table"] for o in OPERATIONS["operations"] if "table" in o and "reader" in o["roles"]
    }
    assert granted == tables
    for operation in OPERATIONS["operations"]:
        if "table" in operation:
            expected = f"Microsoft.OperationalInsights/workspaces/query/{operation['table']}/read"
            assert operation["action"] == expected
    # Every table name in the query texts is one of them.
    source = Path(kql.__file__).read_text(encoding="utf-8")
    named = set(re.findall(r'"(ContainerRegistry\w+|Azure\w+)"', source))
    assert named <= tables, named - tables
