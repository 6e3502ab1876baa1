// The auditor's own resources, in one resource group: its user-assigned identity, its storage
// (host storage, deployment package, the auditor's tables and alert queue), Log Analytics and
// Application Insights for its own telemetry, a Key Vault for alert secrets (only when one is
// given), and the Function App on the Flex Consumption plan with every setting wired.
//
// No account key or connection string appears anywhere: storage and Application Insights are
// reached with the identity (shared-key access and local auth are off), secrets are Key Vault
// references resolved with the same identity.

@description('Region of the resources.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Short unique token for resource names.')
param resourceToken string

@description('azd service name (azure.yaml) that owns the Function App.')
param serviceName string = 'auditor'

@description('The auditor settings (AUDITOR_*) built by main.bicep; storage, identity and secret settings are added here.')
param auditorSettings object

@description('Memory of each Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the Flex Consumption plan scales out to (an audit runs in one).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Replication of the storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSku string = 'Standard_ZRS'

@description('Spread the plan over availability zones (where the region has them).')
param zoneRedundant bool = false

@description('Days the Log Analytics workspace keeps the auditor telemetry.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('Name of the alert queue (AUDITOR_ALERT_QUEUE), created here; empty for none.')
param alertQueue string = ''

@secure()
@description('Generic webhook URL for alerts; stored in Key Vault.')
param alertWebhookUrl string = ''

@secure()
@description('HMAC key for the webhook; stored in Key Vault.')
param alertWebhookSecret string = ''

@secure()
@description('Microsoft Teams Workflows webhook URL; stored in Key Vault.')
param alertTeamsUrl string = ''

@secure()
@description('Slack incoming webhook URL; stored in Key Vault.')
param alertSlackUrl string = ''

var functionAppName = 'func-acr-auditor-${resourceToken}'
var deploymentContainerName = 'app-package'
var hasAlertSecrets = !empty(alertWebhookUrl) || !empty(alertWebhookSecret) || !empty(alertTeamsUrl) || !empty(alertSlackUrl)

// Built-in roles, by id (the same in every tenant).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

// ---------------------------------------------------------------------------- identity

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-acr-auditor-${resourceToken}'
  location: location
  tags: tags
}

// ---------------------------------------------------------------------------- storage

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches its storage over the public endpoint; access needs an Entra token (shared keys are disabled) and TLS 1.2. Network isolation needs VNet integration and private endpoints (docs/deploy.md, Hardening).
  // checkov:skip=CKV_AZURE_59: the public endpoint stays enabled for Flex Consumption without VNet integration (see CKV_AZURE_35); identity-only access.
  // checkov:skip=CKV_AZURE_206: zone-redundant (ZRS) by default; geo-redundancy is one parameter away (storageSku Standard_GZRS or Standard_GRS). The account holds host state and the audit history; the registries' logs themselves live in the audited workspaces.
  // checkov:skip=CKV_AZURE_43: the name is 'stacr' plus uniqueString(), 18 lower-case letters and digits; checkov cannot evaluate the interpolation (tests/unit/test_infra.py checks the rule).
  name: 'stacr${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: storageSku
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = if (!empty(alertQueue)) {
  parent: queueService
  name: empty(alertQueue) ? 'unused' : alertQueue
}

// The host (AzureWebJobsStorage: keys, timer leases) and the Flex deployment package use blobs.
resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'acr-auditor: Functions host storage and deployment package'
  }
}

// The auditor's tables (runs, status, history, summary, alert state), created on first use.
resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'acr-auditor: its own tables'
  }
}

// The alert queue only, and only when one is configured.
resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(alertQueue)) {
  name: guid(storage.id, identity.id, storageQueueDataContributor, alertQueue)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'acr-auditor: its alert queue'
  }
}

// ---------------------------------------------------------------------------- telemetry

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-acr-auditor-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
    features: {
      disableLocalAuth: true
    }
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-acr-auditor-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    IngestionMode: 'LogAnalytics'
    DisableLocalAuth: true
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

// Local auth is off: the host and the Python worker send telemetry with an Entra token.
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, identity.id, monitoringMetricsPublisher)
  scope: insights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'acr-auditor: send its telemetry to Application Insights'
  }
}

// ---------------------------------------------------------------------------- alert secrets

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = if (hasAlertSecrets) {
  // checkov:skip=CKV_AZURE_109: the Function App has no VNet integration, so Key Vault references resolve over the public endpoint; access is RBAC-only, one role assignment per secret.
  // checkov:skip=CKV_AZURE_189: public network access stays on because the Function App has no VNet integration (see CKV_AZURE_109); access is RBAC-only.
  // checkov:skip=CKV_AZURE_42: set below (enableSoftDelete, enablePurgeProtection); checkov does not read the properties of a conditional resource (tests/unit/test_infra.py asserts them).
  // checkov:skip=CKV_AZURE_110: enablePurgeProtection is true below; checkov does not read the properties of a conditional resource (tests/unit/test_infra.py asserts it).
  name: 'kv-acr-${resourceToken}'
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource webhookUrlSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(alertWebhookUrl)) {
  // checkov:skip=CKV_AZURE_41: webhook URLs and the HMAC key do not expire; an expiry date would silently stop alert delivery. Rotate by redeploying with new values.
  // checkov:skip=CKV_AZURE_114: contentType is set below; checkov does not read the properties of a conditional resource (tests/unit/test_infra.py asserts it).
  parent: vault
  name: 'auditor-alert-webhook-url'
  properties: {
    value: alertWebhookUrl
    contentType: 'text/plain'
  }
}

resource webhookSecretSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(alertWebhookSecret)) {
  // checkov:skip=CKV_AZURE_41: alert credentials do not expire; an expiry date would silently stop alert delivery. Rotate by redeploying with new values.
  // checkov:skip=CKV_AZURE_114: contentType is set below; checkov does not read the properties of a conditional resource (tests/unit/test_infra.py asserts it).
  parent: vault
  name: 'auditor-alert-webhook-secret'
  properties: {
    value: alertWebhookSecret
    contentType: 'text/plain'
  }
}

resource teamsUrlSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(alertTeamsUrl)) {
  // checkov:skip=CKV_AZURE_41: alert credentials do not expire; an expiry date would silently stop alert delivery. Rotate by redeploying with new values.
  // checkov:skip=CKV_AZURE_114: contentType is set below; checkov does not read the properties of a conditional resource (tests/unit/test_infra.py asserts it).
  parent: vault
  name: 'auditor-alert-teams-url'
  properties: {
    value: alertTeamsUrl
    contentType: 'text/plain'
  }
}

resource slackUrlSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(alertSlackUrl)) {
  // checkov:skip=CKV_AZURE_41: alert credentials do not expire; an expiry date would silently stop alert delivery. Rotate by redeploying with new values.
  // checkov:skip=CKV_AZURE_114: contentType is set below; checkov does not read the properties of a conditional resource (tests/unit/test_infra.py asserts it).
  parent: vault
  name: 'auditor-alert-slack-url'
  properties: {
    value: alertSlackUrl
    contentType: 'text/plain'
  }
}

// Read access to each secret it needs, one by one, never to the whole vault.
resource webhookUrlReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(alertWebhookUrl)) {
  name: guid(vault.id, identity.id, 'auditor-alert-webhook-url')
  scope: webhookUrlSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource webhookSecretReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(alertWebhookSecret)) {
  name: guid(vault.id, identity.id, 'auditor-alert-webhook-secret')
  scope: webhookSecretSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource teamsUrlReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(alertTeamsUrl)) {
  name: guid(vault.id, identity.id, 'auditor-alert-teams-url')
  scope: teamsUrlSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource slackUrlReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(alertSlackUrl)) {
  name: guid(vault.id, identity.id, 'auditor-alert-slack-url')
  scope: slackUrlSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------- function app

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy is the zoneRedundant parameter, off by default because not every Flex Consumption region has zones; an audit missed during a zone outage is caught up by the next scheduled run.
  name: 'plan-acr-auditor-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

// Identity-based host storage; the auditor reads its tables through the same account.
// AzureWebJobsStorage itself (a connection string, which would carry an account key) is never
// set. Then the identity for DefaultAzureCredential, the app's own telemetry (Entra auth, no
// key; the Python worker exports OpenTelemetry itself, with per-request spans of the Azure SDK
// and HTTP libraries off: a fleet of 10,000 registries would make 10,000 dependency records a
// run, so the run span and metrics count those calls instead, see auditor/telemetry.py), and
// the alert credentials as Key Vault references resolved by the platform with the identity.
var platformAppSettings = [
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storage.name
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identity.properties.clientId
  }
  {
    name: 'AzureWebJobsStorage__tableServiceUri'
    value: storage.properties.primaryEndpoints.table
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: identity.properties.clientId
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: insights.properties.ConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identity.properties.clientId};Authorization=AAD'
  }
  {
    name: 'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY'
    value: 'true'
  }
  {
    name: 'OTEL_SERVICE_NAME'
    value: 'acr-auditor'
  }
  {
    name: 'OTEL_PYTHON_DISABLED_INSTRUMENTATIONS'
    value: 'azure_sdk,requests,urllib,urllib3'
  }
  {
    name: 'AUDITOR_ALERT_WEBHOOK_URL'
    value: empty(alertWebhookUrl) ? '' : '@Microsoft.KeyVault(SecretUri=${webhookUrlSecret.properties.secretUri})'
  }
  {
    name: 'AUDITOR_ALERT_WEBHOOK_SECRET'
    value: empty(alertWebhookSecret) ? '' : '@Microsoft.KeyVault(SecretUri=${webhookSecretSecret.properties.secretUri})'
  }
  {
    name: 'AUDITOR_ALERT_TEAMS_URL'
    value: empty(alertTeamsUrl) ? '' : '@Microsoft.KeyVault(SecretUri=${teamsUrlSecret.properties.secretUri})'
  }
  {
    name: 'AUDITOR_ALERT_SLACK_URL'
    value: empty(alertSlackUrl) ? '' : '@Microsoft.KeyVault(SecretUri=${slackUrlSecret.properties.secretUri})'
  }
]

// The AUDITOR_* settings from main.bicep (values known when the deployment starts).
var auditorAppSettings = [for setting in items(auditorSettings): {
  name: setting.key
  value: setting.value
}]

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17: callers authenticate with function keys (the API) or are Event Grid (the event trigger) and the anonymous health probe; client certificates would lock them out.
  // checkov:skip=CKV_AZURE_222: the API and the Event Grid trigger are reached over the public endpoint (HTTPS only, TLS 1.2); network isolation needs VNet integration and private endpoints (docs/deploy.md, Hardening).
  // checkov:skip=CKV_AZURE_212: the auditor is a scheduled batch that scales to zero; a run missed while an instance fails is caught up by the next one.
  // checkov:skip=CKV_AZURE_213: Flex Consumption has no platform health check; /api/health answers anonymously for an external probe (docs/deploy.md).
  name: functionAppName
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identity.id
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: concat(platformAppSettings, auditorAppSettings)
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
  // The identity holds its data rights before the host first starts.
  dependsOn: [
    deploymentContainer
    blobOwner
    tableContributor
    queueContributor
    metricsPublisher
    webhookUrlReader
    webhookSecretReader
    teamsUrlReader
    slackUrlReader
  ]
}

// Publishing uses Entra tokens (azd, az functionapp deployment); basic credentials stay off.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output functionAppName string = site.name
output functionAppId string = site.id
output functionAppHostName string = site.properties.defaultHostName
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
output identityId string = identity.id
output storageAccountName string = storage.name
output applicationInsightsName string = insights.name
output keyVaultName string = hasAlertSecrets ? vault.name : ''
