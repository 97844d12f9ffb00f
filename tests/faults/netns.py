"""Network namespaces a fault test builds and removes itself: NAT and partitions.

``NatLab`` builds three namespaces joined by veth pairs, all addressed from
198.18.0.0/15 (the benchmarking range, RFC 2544) so that nothing here can
collide with a real network::

    daemon ns  d0 198.18.0.2/24 --- r0 198.18.0.1/24  router ns
                                    r1 198.18.1.1/24 --- a0 198.18.1.2/24  agent ns

The router forwards between its two links and masquerades (nftables) what
leaves on r0, so the daemon sees every agent as 198.18.0.1, as behind a home
or cloud NAT. ``partition`` adds a drop rule to the router's forward chain
(packets vanish silently, as on a dead link: no RST, no ICMP) and ``heal``
flushes it; conntrack keeps the NAT mapping, so a connection that survived
resumes as it would after a real outage.

Nothing touches the host's own namespace: both ends of each veth pair are
created directly inside their namespaces. Namespace names carry the creating
process's pid, so ``remove_stale`` removes only namespaces whose creator is
gone (a killed run) and never those of a run still going on beside us.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass

PREFIX = "gdosf-"
STALE_NAME = re.compile(rf"^{PREFIX}(\d+)-")

DAEMON_ADDR = "198.18.0.2"
ROUTER_OUTER = "198.18.0.1"  # the router on the daemon's side: the address NAT shows
ROUTER_INNER = "198.18.1.1"
AGENT_ADDR = "198.18.1.2"

ROUTER_RULES = """
table ip gdosf_nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "r0" masquerade
    }
}
table inet gdosf_fault {
    chain forward {
        type filter hook forward priority filter; policy accept;
    }
}
"""


def run(*argv: str, input: str | None = None) -> str:
    """Run one ``ip``/``nft`` command; a failure raises with its stderr."""
    result = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def namespaces() -> list[str]:
    """Names of the network namespaces ``ip netns`` knows."""
    return [line.split()[0] for line in run("ip", "netns", "list").splitlines() if line.strip()]


def unavailable() -> str | None:
    """Why this machine cannot create network namespaces, or None when it can.

    Tried for real (creating and deleting one) rather than guessed from the
    uid, since containers may be root without CAP_SYS_ADMIN.
    """
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        run("ip", "netns", "add", probe)
    except (RuntimeError, OSError) as exc:
        return f"cannot create a network namespace here (needs root or CAP_SYS_ADMIN): {exc}"
    delete(probe)
    return None


def delete(name: str) -> None:
    """Kill what still runs inside namespace ``name`` (by pid), then delete it."""
    with contextlib.suppress(RuntimeError):
        for pid in run("ip", "netns", "pids", name).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    with contextlib.suppress(RuntimeError):
        run("ip", "netns", "delete", name)


def remove_stale() -> list[str]:
    """Delete namespaces left by a run that was killed before its teardown."""
    removed = []
    for name in namespaces():
        match = STALE_NAME.match(name)
        if match and not _alive(int(match.group(1))):
            delete(name)
            removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class NatLab:
    """Daemon, router and agent namespaces; see the module docstring."""

    tag: str

    @classmethod
    def create(cls) -> NatLab:
        """Build the three namespaces; on any failure remove what was built."""
        if shutil.which("nft") is None:
            raise RuntimeError("nft is not installed: apt-get install -y nftables")
        remove_stale()
        lab = cls(f"{PREFIX}{os.getpid()}-{os.urandom(3).hex()}")
        try:
            lab._build()
        except BaseException:
            lab.remove()
            raise
        return lab

    @property
    def daemon_ns(self) -> str:
        return f"{self.tag}-d"

    @property
    def router_ns(self) -> str:
        return f"{self.tag}-r"

    @property
    def agent_ns(self) -> str:
        return f"{self.tag}-a"

    def exec_in(self, ns: str) -> list[str]:
        """The prefix that runs a command inside ``ns`` (``ip netns exec`` execs it)."""
        return ["ip", "netns", "exec", ns]

    def _build(self) -> None:
        for ns in (self.daemon_ns, self.router_ns, self.agent_ns):
            run("ip", "netns", "add", ns)
            self._ip(ns, "link", "set", "lo", "up")
        self._link(self.daemon_ns, "d0", f"{DAEMON_ADDR}/24", self.router_ns, "r0", ROUTER_OUTER)
        self._link(self.agent_ns, "a0", f"{AGENT_ADDR}/24", self.router_ns, "r1", ROUTER_INNER)
        self._ip(self.daemon_ns, "route", "add", "default", "via", ROUTER_OUTER)
        self._ip(self.agent_ns, "route", "add", "default", "via", ROUTER_INNER)
        # /proc/sys/net is the writer's namespace's (no procps needed for sysctl).
        forward = "echo 1 > /proc/sys/net/ipv4/ip_forward"
        run(*self.exec_in(self.router_ns), "sh", "-c", forward)
        run(*self.exec_in(self.router_ns), "nft", "-f", "-", input=ROUTER_RULES)

    def _link(self, ns: str, name: str, addr: str, router: str, peer: str, peer_ip: str) -> None:
        """A veth pair created with each end already in its namespace."""
        run(
            "ip", "link", "add", name, "netns", ns, "type", "veth",
            "peer", "name", peer, "netns", router,
        )  # fmt: skip
        self._ip(ns, "addr", "add", addr, "dev", name)
        self._ip(router, "addr", "add", f"{peer_ip}/24", "dev", peer)
        self._ip(ns, "link", "set", name, "up")
        self._ip(router, "link", "set", peer, "up")

    def _ip(self, ns: str, *args: str) -> None:
        run("ip", "-n", ns, *args)

    def _nft(self, *args: str) -> None:
        run(*self.exec_in(self.router_ns), "nft", *args)

    def partition(self) -> None:
        """Drop every packet the router would forward, both ways, silently."""
        self._nft("add", "rule", "inet", "gdosf_fault", "forward", "drop")

    def heal(self) -> None:
        self._nft("flush", "chain", "inet", "gdosf_fault", "forward")

    def remove(self) -> None:
        """Delete the namespaces (and so the veth pairs and rules inside them)."""
        for ns in (self.agent_ns, self.router_ns, self.daemon_ns):
            if ns in namespaces():
                delete(ns)
