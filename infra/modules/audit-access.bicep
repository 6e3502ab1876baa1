// The auditor's rights on one audited subscription: the custom reader role (operations.json),
// and the remediation role only when remediation is switched on.
targetScope = 'subscription'

@description('Object id of the auditor identity.')
param principalId string

@description('Name (GUID) of the ACR Auditor Reader custom role.')
param readerRoleName string

@description('Name (GUID) of the ACR Auditor Remediator custom role; empty: no remediation rights.')
param remediatorRoleName string = ''

resource readerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, readerRoleName)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', readerRoleName)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'acr-auditor: read registries, diagnostic settings and workspaces'
  }
}

resource remediatorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(remediatorRoleName)) {
  name: guid(subscription().id, principalId, 'remediator', remediatorRoleName)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', remediatorRoleName)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'acr-auditor: write diagnostic settings (remediation)'
  }
}
