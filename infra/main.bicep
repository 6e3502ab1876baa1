// acr-auditor: everything for a running, scheduled auditor in one subscription-level deployment
// (azd up, or az deployment sub create; see docs/deploy.md).
//
// - A resource group with the Function App (Flex Consumption, Python 3.11, user-assigned
//   identity), its storage, Application Insights + Log Analytics, and a Key Vault for alert
//   secrets (modules/app.bicep).
// - Custom roles built from operations.json, holding only the operations the code calls, assigned
//   on each audited subscription (or, with managementGroupId, by management-group.bicep).
// - Query rights on workspaces outside the audited subscriptions, at each workspace only.
// - Diagnostic-settings write rights only when enableRemediation is true.
// - Optionally the Event Grid subscription that re-audits a registry when its settings change.
targetScope = 'subscription'

// ---------------------------------------------------------------------------- where

@minLength(1)
@maxLength(64)
@description('Name of the environment (azd sets it); resource names and tags derive from it.')
param environmentName string

@minLength(1)
@description('Region of the auditor resources; it must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group to create or reuse; default rg-<environmentName>.')
param resourceGroupName string = ''

// ---------------------------------------------------------------------------- what is audited

@description('Subscriptions to audit, comma-separated GUIDs (AUDITOR_SUBSCRIPTIONS). Empty: the subscription of this deployment. The reader role is assigned on each; the deploying identity needs User Access Administrator (or Owner) on each.')
param auditedSubscriptions string = ''

@description('Audit a whole management group instead (its id, not its display name). The roles are then created and assigned by management-group.bicep (docs/deploy.md); this deployment assigns nothing on subscriptions and AUDITOR_SUBSCRIPTIONS lists only the auditedSubscriptions given (empty: every subscription the identity can read).')
param managementGroupId string = ''

@description('NCRONTAB schedule of the audit (AUDITOR_SCHEDULE), 6 fields: second minute hour day month day-of-week.')
param schedule string = '0 0 * * * *'

@description('Accepted Log Analytics workspaces, comma-separated ARM ids (AUDITOR_ACCEPTED_WORKSPACES). Empty: any workspace. The auditor gets query rights on each.')
param acceptedWorkspaces string = ''

@description('Other workspaces to query that lie outside the audited subscriptions, comma-separated ARM ids; the auditor gets query rights on each (the registry and activity tables only).')
param queryWorkspaces string = ''

@description('Destination kinds that count, comma-separated: workspace, storage, eventhub (AUDITOR_ACCEPTED_DESTINATIONS).')
param acceptedDestinations string = 'workspace'

@description('Log categories every registry must send, comma-separated (AUDITOR_REQUIRED_CATEGORIES).')
param requiredCategories string = 'ContainerRegistryLoginEvents,ContainerRegistryRepositoryEvents'

@description('AllMetrics must be enabled too (AUDITOR_REQUIRE_METRICS).')
param requireMetrics bool = true

@description('Workspace destinations must use resource-specific tables (AUDITOR_REQUIRE_DEDICATED).')
param requireDedicated bool = true

@description('Any other auditor setting by name, e.g. {"AUDITOR_MAX_CONCURRENCY": "32"} (docs/settings.md). Values are strings; they override the ones above.')
param settingOverrides object = {}

// ---------------------------------------------------------------------------- alerts

@secure()
@description('Generic webhook URL for alerts (AUDITOR_ALERT_WEBHOOK_URL); stored in Key Vault.')
param alertWebhookUrl string = ''

@secure()
@description('HMAC-SHA256 key for the webhook, 16 characters or more (AUDITOR_ALERT_WEBHOOK_SECRET); stored in Key Vault.')
param alertWebhookSecret string = ''

@secure()
@description('Microsoft Teams Workflows webhook URL (AUDITOR_ALERT_TEAMS_URL); stored in Key Vault.')
param alertTeamsUrl string = ''

@secure()
@description('Slack incoming webhook URL (AUDITOR_ALERT_SLACK_URL); stored in Key Vault.')
param alertSlackUrl string = ''

@description('Storage queue in the auditor storage account that receives each alert (AUDITOR_ALERT_QUEUE); empty for none.')
param alertQueue string = ''

@description('Write each alert as an ACR_AUDITOR_ALERT log record in Application Insights (AUDITOR_ALERT_LOG_RECORDS).')
param alertLogRecords bool = true

@description('Hours between reminders while a registry keeps failing; 0 for none (AUDITOR_ALERT_REMIND_HOURS).')
param alertRemindHours string = '24'

@description('Alert on suspicious sign-ins (AUDITOR_ALERT_LOGIN).')
param alertLogin bool = false

@description('Treat unknown registries as failing (AUDITOR_ALERT_ON_UNKNOWN).')
param alertOnUnknown bool = false

// ---------------------------------------------------------------------------- rights and events

@description('Give the auditor the right to write diagnostic settings on the audited scope (remediation), and switch remediation on (AUDITOR_ENABLE_REMEDIATION). Off: it can only read.')
param enableRemediation bool = false

@description('Workspace ARM id remediation sends registry logs to (AUDITOR_REMEDIATION_WORKSPACE); required with enableRemediation.')
param remediationWorkspace string = ''

@description('Comma-separated subscription ids whose noncompliant registries the timer remediates (AUDITOR_REMEDIATION_SUBSCRIPTIONS); empty: none.')
param remediationSubscriptions string = ''

@description('Registry tag, name or name=value, whose noncompliant registries the timer remediates in any audited subscription (AUDITOR_REMEDIATION_TAG); empty: none.')
param remediationTag string = ''

@description('Subscribe the function diagnostic_setting_changed to this subscription system topic. Set it after the first code deployment (Event Grid checks that the function exists).')
param subscribeEvents bool = false

@description('Name of an existing system topic for this subscription (Azure allows one per subscription); empty: create one.')
param existingSystemTopicName string = ''

@description('Resource group of that existing system topic; empty: the auditor resource group.')
param existingSystemTopicResourceGroup string = ''

// ---------------------------------------------------------------------------- sizing

@description('Memory of each Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the plan scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Replication of the auditor storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSku string = 'Standard_ZRS'

@description('Days Log Analytics keeps the auditor telemetry.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

// ---------------------------------------------------------------------------- derived

var operations = loadJsonContent('operations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'acr-auditor'
}
var rgName = empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
var useManagementGroup = !empty(managementGroupId)
var givenSubscriptions = empty(auditedSubscriptions) ? [] : split(toLower(replace(auditedSubscriptions, ' ', '')), ',')
var subscriptionIds = empty(givenSubscriptions) ? [
  subscription().subscriptionId
] : givenSubscriptions
var assignedSubscriptions = useManagementGroup ? [] : subscriptionIds
var acceptedWorkspaceIds = empty(acceptedWorkspaces) ? [] : split(toLower(replace(acceptedWorkspaces, ' ', '')), ',')
var otherWorkspaceIds = empty(queryWorkspaces) ? [] : split(toLower(replace(queryWorkspaces, ' ', '')), ',')
var workspaceIds = union(acceptedWorkspaceIds, otherWorkspaceIds)
var workspaceGroups = [for id in workspaceIds: format('/subscriptions/{0}/resourceGroups/{1}', split(id, '/')[2], split(id, '/')[4])]

// Role names are GUIDs, unique per tenant; display names carry the token for the same reason.
var readerRoleName = guid(subscription().id, resourceToken, 'acr-auditor-reader')
var workspaceReaderRoleName = guid(subscription().id, resourceToken, 'acr-auditor-workspace-reader')
var remediatorRoleName = guid(subscription().id, resourceToken, 'acr-auditor-remediator')
var subscriptionScopes = [for id in subscriptionIds: '/subscriptions/${id}']

// Every AUDITOR_* setting the code reads (docs/settings.md), as app settings; modules/app.bicep
// adds the storage, identity, telemetry and Key Vault reference settings. Empty means the
// code default applies. AUDITOR_STORAGE stays empty: the tables live in the host storage
// account, reached with the identity (AzureWebJobsStorage__accountName and __tableServiceUri).
var defaultSettings = {
  AUDITOR_SUBSCRIPTIONS: useManagementGroup ? join(givenSubscriptions, ',') : join(subscriptionIds, ',')
  AUDITOR_SCHEDULE: schedule
  AUDITOR_FULL_SWEEP_HOURS: ''
  AUDITOR_CHANGES_OVERLAP_MINUTES: ''
  AUDITOR_REQUIRED_CATEGORIES: requiredCategories
  AUDITOR_REQUIRE_METRICS: requireMetrics ? 'true' : 'false'
  AUDITOR_ACCEPTED_DESTINATIONS: acceptedDestinations
  AUDITOR_ACCEPTED_WORKSPACES: join(acceptedWorkspaceIds, ',')
  AUDITOR_REQUIRE_DEDICATED: requireDedicated ? 'true' : 'false'
  AUDITOR_EXEMPTIONS: ''
  AUDITOR_ARM_ENDPOINT: environment().resourceManager
  AUDITOR_ARM_AUDIENCE: environment().resourceManager
  AUDITOR_LOGS_ENDPOINT: ''
  AUDITOR_LOGS_AUDIENCE: ''
  AUDITOR_STORAGE: ''
  AUDITOR_TABLE_PREFIX: 'acraudit'
  AUDITOR_MAX_CONCURRENCY: ''
  AUDITOR_ARM_READS_PER_SECOND: ''
  AUDITOR_ARM_BURST: ''
  AUDITOR_HTTP_RETRIES: ''
  AUDITOR_LOGS_LOOKBACK_HOURS: ''
  AUDITOR_SILENT_AFTER_HOURS: ''
  AUDITOR_PENDING_MINUTES: ''
  AUDITOR_BURST_FAILURES: ''
  AUDITOR_BURST_MINUTES: ''
  AUDITOR_LOGS_CONCURRENCY: ''
  AUDITOR_ALERT_QUEUE: alertQueue
  AUDITOR_ALERT_LOG_RECORDS: alertLogRecords ? 'true' : 'false'
  AUDITOR_ALERT_REMIND_HOURS: alertRemindHours
  AUDITOR_ALERT_LOGIN: alertLogin ? 'true' : 'false'
  AUDITOR_ALERT_ON_UNKNOWN: alertOnUnknown ? 'true' : 'false'
  AUDITOR_ALERT_SINK_BUDGET_SECONDS: ''
  AUDITOR_RETENTION_EVIDENCE_DAYS: ''
  AUDITOR_RETENTION_RUNS_DAYS: ''
  AUDITOR_RETENTION_HISTORY_DAYS: ''
  // The setting follows the role: the app writes only when its identity may.
  AUDITOR_ENABLE_REMEDIATION: enableRemediation ? 'true' : 'false'
  AUDITOR_REMEDIATION_WORKSPACE: remediationWorkspace
  AUDITOR_REMEDIATION_SUBSCRIPTIONS: remediationSubscriptions
  AUDITOR_REMEDIATION_TAG: remediationTag
  AUDITOR_REMEDIATION_MAX_PER_RUN: ''
}

// ---------------------------------------------------------------------------- resources

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: rgName
  location: location
  tags: tags
}

module app 'modules/app.bicep' = {
  name: 'acr-auditor-app-${resourceToken}'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    auditorSettings: union(defaultSettings, settingOverrides)
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    storageSku: storageSku
    logRetentionDays: logRetentionDays
    alertQueue: alertQueue
    alertWebhookUrl: alertWebhookUrl
    alertWebhookSecret: alertWebhookSecret
    alertTeamsUrl: alertTeamsUrl
    alertSlackUrl: alertSlackUrl
  }
}

resource readerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (!useManagementGroup) {
  name: readerRoleName
  properties: {
    roleName: 'ACR Auditor Reader (${resourceToken})'
    description: operations.roles.reader.description
    type: 'CustomRole'
    permissions: [
      {
        actions: operations.roles.reader.actions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: union([
      subscription().id
    ], subscriptionScopes)
  }
}

resource remediatorRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (enableRemediation && !useManagementGroup) {
  name: remediatorRoleName
  properties: {
    roleName: 'ACR Auditor Remediator (${resourceToken})'
    description: operations.roles.remediator.description
    type: 'CustomRole'
    permissions: [
      {
        actions: operations.roles.remediator.actions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: union([
      subscription().id
    ], subscriptionScopes)
  }
}

resource workspaceReaderRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (!empty(workspaceIds)) {
  name: workspaceReaderRoleName
  properties: {
    roleName: 'ACR Auditor Workspace Reader (${resourceToken})'
    description: operations.roles.workspaceReader.description
    type: 'CustomRole'
    permissions: [
      {
        actions: operations.roles.workspaceReader.actions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: union([
      subscription().id
    ], workspaceGroups)
  }
}

module subscriptionAccess 'modules/audit-access.bicep' = [for id in assignedSubscriptions: {
  name: 'acr-auditor-access-${resourceToken}'
  scope: subscription(id)
  params: {
    principalId: app.outputs.principalId
    readerRoleName: readerRoleName
    remediatorRoleName: enableRemediation ? remediatorRoleName : ''
  }
  dependsOn: [
    readerRole
    remediatorRole
  ]
}]

module workspaceAccess 'modules/workspace-access.bicep' = [for (id, i) in workspaceIds: {
  name: 'acr-auditor-workspace-${i}-${resourceToken}'
  scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
  params: {
    workspaceName: last(split(id, '/'))
    principalId: app.outputs.principalId
    roleName: workspaceReaderRoleName
  }
  dependsOn: [
    workspaceReaderRole
  ]
}]

module events 'modules/events.bicep' = if (subscribeEvents) {
  name: 'acr-auditor-events-${resourceToken}'
  scope: resourceGroup(empty(existingSystemTopicResourceGroup) ? rgName : existingSystemTopicResourceGroup)
  params: {
    functionAppId: app.outputs.functionAppId
    systemTopicName: empty(existingSystemTopicName) ? 'evgt-acr-auditor-${resourceToken}' : existingSystemTopicName
    createSystemTopic: empty(existingSystemTopicName)
    tags: tags
  }
  dependsOn: [
    rg
  ]
}

// ---------------------------------------------------------------------------- outputs (azd env)

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_NAME string = app.outputs.functionAppName
output AUDITOR_API_URL string = 'https://${app.outputs.functionAppHostName}/api'
output AUDITOR_PRINCIPAL_ID string = app.outputs.principalId
output AUDITOR_CLIENT_ID string = app.outputs.clientId
output AUDITOR_APPLICATION_INSIGHTS string = app.outputs.applicationInsightsName
output AUDITOR_READER_ROLE_ID string = useManagementGroup ? '' : readerRole.id
output AUDITOR_MANAGEMENT_GROUP_ID string = managementGroupId
