// Query rights on one Log Analytics workspace outside the audited scope (a central logging
// subscription): the ACR Auditor Workspace Reader custom role, at the workspace only.

@description('Name of the workspace, in this resource group.')
param workspaceName string

@description('Object id of the auditor identity.')
param principalId string

@description('Name (GUID) of the ACR Auditor Workspace Reader custom role.')
param roleName string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, principalId, roleName)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleName)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'acr-auditor: query the registry and activity tables'
  }
}
