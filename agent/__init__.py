"""The gdos node agent: dials the daemon, reports facts and load, runs work.

It imports ``gdos.wire.protocol`` and a few shared helpers, never the daemon, and
keeps its imports lean so that it stays small in memory on every node.
"""
