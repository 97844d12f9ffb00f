"""The wire: message kinds and their typed bodies, frames, schemas, sockets and flow control."""
