"""gdos: a terminal-first operations toolkit for fleets without Kubernetes."""

__version__ = "0.1.0"
