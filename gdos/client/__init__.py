"""The client side of the daemon's control socket, used by the CLI and the dashboard."""
