"""The control daemon (gdosd): mesh, control socket, state."""
