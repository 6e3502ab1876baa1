"""acr-auditor: audits the diagnostic settings of Azure Container Registries."""

__version__ = "0.1.0"
