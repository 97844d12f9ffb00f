"""The package format: manifests and package archives, shared by CLI, daemon and agent."""
