"""Hosts made of Linux network namespaces, for tests of what crosses a network.

A :class:`Network` is a bridge in a namespace of its own (the "switch") and one namespace
per host, each joined to the bridge by a veth pair and given one address of a private
subnet. No namespace has a route out: every byte the hosts send stays on the bridge,
and nothing on the machine's own network (its PostgreSQL, its Redis) is reachable.

Each process a host runs gets its own UTS namespace with the host's name as hostname
(``unshare --uts``) and its own session, so it can be killed with its children.
:meth:`Network.destroy` kills every process still in the namespaces it made and
deletes them; it runs however the test ends. Needs root and iproute2.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "10.77.0"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@dataclass
class Host:
    """One namespace on the bridge: its name, address and the switch-side link."""

    network: Network
    name: str
    namespace: str
    address: str
    link: str  # the veth end inside the switch namespace: "the cable" to cut
    processes: list[subprocess.Popen] = field(default_factory=list)

    def run(self, *command: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        """Run a command in this host to completion."""
        return subprocess.run(
            self._wrap(command), capture_output=True, text=True, timeout=timeout, **kwargs
        )

    def start(self, *command: str, env: dict[str, str], log: Path, user: str | None = None):
        """Start a long-running process in this host, its output in ``log``."""
        with open(log, "ab") as out:
            process = subprocess.Popen(
                self._wrap(command, user),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def cut(self) -> None:
        """Pull the cable: the switch side of this host's link goes down."""
        ip("-n", self.network.switch, "link", "set", self.link, "down")

    def reconnect(self) -> None:
        ip("-n", self.network.switch, "link", "set", self.link, "up")

    def _wrap(self, command: tuple[str, ...], user: str | None = None) -> list[str]:
        inner = list(command)
        if user is not None:
            inner = ["runuser", "-u", user, "--", *inner]
        return [
            "ip", "netns", "exec", self.namespace,
            "unshare", "--uts", "--",
            "sh", "-c", f'hostname {self.name} && exec "$@"', "sh", *inner,
        ]  # fmt: skip


class Network:
    """A bridge and hosts on it; made and destroyed by :func:`network`."""

    def __init__(self) -> None:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise AssertionError("network namespaces need root and iproute2 (`ip`)")
        self.tag = uuid.uuid4().hex[:5]
        self.switch = f"trainserve-{self.tag}-sw"
        self.namespaces: list[str] = []
        self.hosts: dict[str, Host] = {}

    def create_switch(self) -> None:
        self._add_namespace(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")

    def add_host(self, name: str) -> Host:
        index = len(self.hosts) + 2
        namespace = f"trainserve-{self.tag}-{name}"
        self._add_namespace(namespace)
        inside, outside = f"ts{self.tag}{index}a", f"ts{self.tag}{index}b"
        # Both ends are made in the switch namespace, then one moves into the host's.
        ip("-n", self.switch, "link", "add", inside, "type", "veth", "peer", "name", outside)
        ip("-n", self.switch, "link", "set", inside, "netns", namespace)
        ip("-n", self.switch, "link", "set", outside, "master", "br0", "up")
        address = f"{SUBNET}.{index}"
        ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inside)
        ip("-n", namespace, "link", "set", inside, "up")
        host = Host(self, name, namespace, address, outside)
        self.hosts[name] = host
        return host

    def _add_namespace(self, namespace: str) -> None:
        ip("netns", "add", namespace)
        self.namespaces.append(namespace)
        ip("-n", namespace, "link", "set", "lo", "up")

    def destroy(self) -> None:
        """Kill what runs in our namespaces (by process id) and delete them."""
        for host in self.hosts.values():
            for process in host.processes:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        for namespace in reversed(self.namespaces):
            while time.monotonic() < deadline:
                pids = ip("netns", "pids", namespace, check=False).stdout.split()
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
                time.sleep(0.1)
            ip("netns", "del", namespace, check=False)
        for host in self.hosts.values():
            for process in host.processes:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5)


@contextlib.contextmanager
def network() -> Iterator[Network]:
    """A fresh network, destroyed with everything in it however the block ends."""
    net = Network()
    try:
        net.create_switch()
        yield net
    finally:
        net.destroy()
