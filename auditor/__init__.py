"""acr-auditor: audits the diagnostic settings of Azure Container Registries."""
