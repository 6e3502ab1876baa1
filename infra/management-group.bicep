// The auditor's rights on a whole management group, for main.bicep with managementGroupId set:
// the custom reader role (operations.json) defined and assigned at the management group, and the
// remediation role only with enableRemediation. A subscription-level deployment cannot write at
// a management group, so this one runs on its own (docs/deploy.md):
//
//   az deployment mg create --management-group-id <mg> --location <region> \
//     --template-file infra/management-group.bicep \
//     --parameters principalId=<AUDITOR_PRINCIPAL_ID output of main.bicep>
targetScope = 'managementGroup'

@description('Object id of the auditor identity (output AUDITOR_PRINCIPAL_ID of main.bicep).')
param principalId string

@description('Also let the auditor write diagnostic settings (remediation).')
param enableRemediation bool = false

var operations = loadJsonContent('operations.json')
var token = toLower(uniqueString(managementGroup().id, principalId))

resource readerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(managementGroup().id, principalId, 'acr-auditor-reader')
  properties: {
    roleName: 'ACR Auditor Reader (${token})'
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
    assignableScopes: [
      managementGroup().id
    ]
  }
}

resource remediatorRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (enableRemediation) {
  name: guid(managementGroup().id, principalId, 'acr-auditor-remediator')
  properties: {
    roleName: 'ACR Auditor Remediator (${token})'
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
    assignableScopes: [
      managementGroup().id
    ]
  }
}

resource readerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(managementGroup().id, principalId, 'acr-auditor-reader-assignment')
  properties: {
    roleDefinitionId: readerRole.id
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'acr-auditor: read registries, diagnostic settings and workspaces'
  }
}

resource remediatorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableRemediation) {
  name: guid(managementGroup().id, principalId, 'acr-auditor-remediator-assignment')
  properties: {
    roleDefinitionId: remediatorRole.id
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'acr-auditor: write diagnostic settings (remediation)'
  }
}

output readerRoleId string = readerRole.id
