"""How consumers find an interface: its proxy's address when it has one.

Every service gets `FAULTBOX_<SVC>_<IFACE>_{ADDR,HOST,PORT}` for every interface, and the values
of its `env=` are rewritten where they name another service's interface (`127.0.0.1:<port>` or
`localhost:<port>`, as `svc.iface.addr` writes it), so the system's own traffic goes through the
proxies. A service's own interfaces are never rewritten in its own env: those are what it binds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from faultbox.errors import Code, FaultboxError
from faultbox.model.service import Service

Aliases = Mapping[int, str]  # real port on 127.0.0.1 -> the proxy's "host:port"


def env_prefix(service: str, interface: str) -> str:
    return f"FAULTBOX_{service}_{interface}".upper().replace("-", "_")


def wiring_env(services: Iterable[Service], proxied: Mapping[tuple[str, str], tuple[str, int]]) -> dict[str, str]:
    """FAULTBOX_<SVC>_<IFACE>_{ADDR,HOST,PORT}: the proxy's address where there is one."""
    out: dict[str, str] = {}
    for svc in services:
        for iface in svc.interfaces:
            host, port = proxied.get((svc.name, iface.name), (iface.host, iface.port))
            prefix = env_prefix(svc.name, iface.name)
            out[f"{prefix}_ADDR"] = f"{host}:{port}"
            out[f"{prefix}_HOST"] = host
            out[f"{prefix}_PORT"] = str(port)
    return out


_LOCAL = re.compile(r"(?<![\w.-])(?:127\.0\.0\.1|localhost):(\d+)(?!\d)")


def rewrite(value: str, aliases: Aliases) -> str:
    """`value` with every local address of a proxied interface replaced by its proxy's."""
    if not aliases or ":" not in value:
        return value
    return _LOCAL.sub(lambda m: aliases.get(int(m.group(1)), m.group(0)), value)


def rewrite_env(
    env: Mapping[str, str],
    aliases: Aliases,
    own_ports: Iterable[int],
    proxied: Mapping[tuple[str, str], tuple[str, int]] | None = None,
) -> dict[str, str]:
    """A service's env with other services' interface addresses pointing at their proxies, and
    `svc.iface.proxy_addr` placeholders resolved. Raises UnknownProxy for a placeholder naming an
    interface that has no proxy."""
    mine = set(own_ports)
    usable = {port: addr for port, addr in aliases.items() if port not in mine}
    return {key: _placeholders(key, rewrite(value, usable), proxied or {}) for key, value in env.items()}


class UnknownProxy(FaultboxError, ValueError):
    """An env value names a proxy address the spec does not have."""

    code = Code.SPEC_BAD_ARGUMENT


_PLACEHOLDER = re.compile(r"__FB_PROXY_(ADDR|HOST|PORT)_([A-Za-z][\w-]*?)__([A-Za-z][\w-]*?)__")


def _placeholders(key: str, value: str, proxied: Mapping[tuple[str, str], tuple[str, int]]) -> str:
    if "__FB_PROXY_" not in value:
        return value

    def resolve(m: re.Match[str]) -> str:
        found = proxied.get((m.group(2), m.group(3)))
        if found is None:
            raise UnknownProxy(
                f"env {key} names the proxy of {m.group(2)}.{m.group(3)}, which has none "
                "(an interface with proxy=False, or a protocol faultbox has no proxy for)"
            )
        host, port = found
        return {"ADDR": f"{host}:{port}", "HOST": host, "PORT": str(port)}[m.group(1)]

    return _PLACEHOLDER.sub(resolve, value)
