"""``python -m gdos.devtools.wait_online NODE SECONDS``: wait until NODE is online.

Used by ``make up`` so the node list it prints already shows the new agent.
"""

from __future__ import annotations

import asyncio
import sys
import time

from gdos.client.control import Client
from gdos.errors import GdosError


async def wait_online(name: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    async with await Client.connect() as client:
        while time.monotonic() < deadline:
            nodes = (await client.call("node.list"))["nodes"]
            if any(n["name"] == name and n["online"] for n in nodes):
                return True
            await asyncio.sleep(0.2)
    return False


def main() -> int:
    name, seconds = sys.argv[1], float(sys.argv[2])
    try:
        ok = asyncio.run(wait_online(name, seconds))
    except GdosError as error:
        sys.stderr.write(f"{error}\n")
        return error.exit_code
    if not ok:
        sys.stderr.write(
            f"node {name} did not come online within {seconds:g}s; see $GDOS_HOME/log/agent.log\n"
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
