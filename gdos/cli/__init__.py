"""The ``gdos`` command line: thin modules that parse, call the client, render."""
