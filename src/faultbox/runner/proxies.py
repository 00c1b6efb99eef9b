"""The proxies of one test: one in front of every interface whose protocol has a codec, opened
before any service starts (so every consumer's env can name it) and closed after they stop."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from faultbox.errors import Code, InfraError, SpecError
from faultbox.model.proxy import ProxyRule
from faultbox.model.result import Diagnostic
from faultbox.model.scenario import FaultAssumption
from faultbox.model.service import Service
from faultbox.proxy.hub import check_fault, has_proxy
from faultbox.proxy.remote import ProxyWorkerError, RemoteHub, RemoteListener
from faultbox.proxy.session import Endpoint

Emit = Callable[[str, str, dict[str, str]], object]


class ProxySet:
    def __init__(self, hub: Callable[[], RemoteHub], run_seed: int, emit: Emit) -> None:
        self._hub = hub
        self.run_seed = run_seed
        self.emit = emit
        self.by_target: dict[str, RemoteListener] = {}  # "svc.iface" -> its proxy

    def open(self, services: Iterable[Service]) -> None:
        """A proxy for every interface that can have one; InfraError (PROXY_FAILED) when the worker
        cannot open them."""
        services = list(services)
        # Ports the services will bind: a proxy's free port must not be one of them (auto ports
        # were picked when the spec loaded, and the kernel may hand them out again).
        taken = {iface.port for svc in services for iface in svc.interfaces}
        try:
            for svc in services:
                for iface in svc.interfaces:
                    if not iface.proxy or not iface.port or not has_proxy(iface.protocol):
                        continue
                    endpoint = Endpoint(svc.name, iface.name, iface.protocol, iface.host, iface.port, iface.record)
                    listener = self._open(endpoint, svc.name, taken)
                    self.by_target[f"{svc.name}.{iface.name}"] = listener
                    self.emit(
                        "proxy_started",
                        svc.name,
                        {
                            "interface": iface.name,
                            "protocol": iface.protocol,
                            "listen": listener.addr,
                            "target": iface.addr,
                            "mode": "passthrough",
                        },
                    )
        except (ProxyWorkerError, OSError) as exc:
            raise InfraError(Code.PROXY_FAILED, f"cannot open the interfaces' proxies: {exc}") from None

    def _open(self, endpoint: Endpoint, service: str, taken: set[int]) -> RemoteListener:
        for _ in range(8):
            listener = self._hub().open(endpoint, self._emitter(service), run_seed=self.run_seed)
            if listener.port not in taken:
                return listener
            listener.close()
        raise InfraError(Code.PROXY_FAILED, "no free port for a proxy outside the services' own ports")

    def _emitter(self, service: str) -> Callable[[str, dict[str, str]], None]:
        emit = self.emit

        def to_trace(type: str, fields: dict[str, str]) -> None:
            emit(type, service, fields)

        return to_trace

    @property
    def addresses(self) -> dict[tuple[str, str], tuple[str, int]]:
        """(service, interface) -> the proxy's (host, port)."""
        return {
            (listener.endpoint.service, listener.endpoint.interface): (listener.host, listener.port)
            for listener in self.by_target.values()
        }

    @property
    def aliases(self) -> dict[int, str]:
        """Real port -> proxy address, for rewriting env values and endpoints."""
        return {listener.endpoint.target_port: listener.addr for listener in self.by_target.values()}

    @property
    def port_aliases(self) -> dict[str, str]:
        """Real port -> proxy port, as text, for syscall address rules (`addr="*:5432"`)."""
        return {str(listener.endpoint.target_port): str(listener.port) for listener in self.by_target.values()}

    @property
    def real_addresses(self) -> dict[int, str]:
        """Proxy port -> the real interface address, for syscall events and address rules."""
        return {
            listener.port: f"{listener.endpoint.target_host}:{listener.endpoint.target_port}"
            for listener in self.by_target.values()
        }

    def diagnostics(self) -> list[Diagnostic]:
        out: list[Diagnostic] = []
        for target, listener in self.by_target.items():
            for message in listener.warnings:
                out.append(
                    Diagnostic(
                        "warning",
                        Code.PROXY_UNDECODED.value,
                        f"{target}: {message}; the rest of that connection was relayed without faults",
                        service=listener.endpoint.service,
                    )
                )
        return out

    def close(self) -> None:
        for listener in self.by_target.values():
            listener.close()

    def listeners(self) -> Mapping[str, RemoteListener]:
        return self.by_target


def check_assumptions(assumptions: Iterable[FaultAssumption]) -> None:
    """Refuse, before any test runs, a protocol fault whose values its codec rejects (a Kafka error
    code that does not exist), naming the assumption that declares it."""
    for fa in assumptions:
        for rule in fa.rules:
            if not isinstance(rule, ProxyRule):
                continue
            problem = check_fault(rule.protocol, rule.fault)
            if problem is not None:
                raise SpecError(
                    Code.SPEC_BAD_ARGUMENT,
                    f'fault_assumption("{fa.name}"): {rule.describe()} on {rule.target}: {problem}',
                    fa.location,
                )
