"""Tools for developing gdos: mock cluster, completion generation, waiting helpers."""
