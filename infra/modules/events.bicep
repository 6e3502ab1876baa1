// Event Grid: diagnostic settings written or deleted on registries of this subscription reach
// the function diagnostic_setting_changed (function_app.py) within seconds, instead of waiting
// for the next timer run. Deploy after the code: Event Grid checks that the function exists.

@description('Resource id of the auditor Function App.')
param functionAppId string

@description('Name of the subscription system topic (one per subscription: reuse one that exists).')
param systemTopicName string

@description('Create the system topic (false: it exists already in this resource group).')
param createSystemTopic bool = true

@description('Tags for the system topic.')
param tags object = {}

resource newTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (createSystemTopic) {
  name: systemTopicName
  location: 'global'
  tags: tags
  properties: {
    source: subscription().id
    topicType: 'Microsoft.Resources.Subscriptions'
  }
}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource toAuditor 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: 'acr-auditor-diagnostic-settings'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/diagnostic_setting_changed'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Resources.ResourceWriteSuccess'
        'Microsoft.Resources.ResourceDeleteSuccess'
      ]
      // Both must hold: a diagnostic setting, on a container registry.
      advancedFilters: [
        {
          operatorType: 'StringContains'
          key: 'subject'
          values: [
            '/providers/Microsoft.ContainerRegistry/registries/'
          ]
        }
        {
          operatorType: 'StringContains'
          key: 'subject'
          values: [
            '/providers/Microsoft.Insights/diagnosticSettings/'
          ]
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
  dependsOn: [
    newTopic
  ]
}
