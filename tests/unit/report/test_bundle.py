"""Failure bundles as files: what a bundle holds and reads back, the files of a spec it carries,
pruning, and every kind of bad input refused with a code that names the file."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from faultbox.cli.bundles import BundleWriter
from faultbox.cli.main import main
from faultbox.errors import Code
from faultbox.model.event import Event
from faultbox.model.result import Diagnostic, FaultRecord, Outcome, TestResult, Violation
from faultbox.report import bundle as fb
from faultbox.spec import load_spec
from faultbox.spec.loader import spec_files


def failed_result(name: str = "test_x", seed: int = 42) -> TestResult:
    events = []
    for i in range(1, 31):
        ev = Event("syscall", "db", {"syscall": "write", "decision": "deny(EIO)" if i == 25 else "allow"}, ts=100.0 + i)
        ev.seq = i
        events.append(ev)
    return TestResult(
        name=name,
        outcome=Outcome.FAILED,
        reason='assert_eq failed: "a" != "b"',
        seed=seed,
        location="spec.star:9",
        events=events,
        violation=Violation("no_eio", "saw EIO", 25, events[24].to_dict()),
        faults=[FaultRecord("db", "write", "deny(EIO)", ["write"], matched=3, fired=1)],
        diagnostics=[Diagnostic("warning", Code.FAULT_NOT_FIRED.value, "fired nothing")],
        decisions="choose.mode=1;fires.db:write=101",
    )


def spec_dir(tmp_path: Path) -> Path:
    d = tmp_path / "project"
    (d / "lib").mkdir(parents=True)
    (d / "spec.star").write_text('load("lib/helpers.star", "helper")\ncfg = load_json("data.json")\n')
    (d / "lib" / "helpers.star").write_text("def helper():\n    return 1\n")
    (d / "data.json").write_text('{"a": 1}\n')
    (tmp_path / "outside.json").write_text("{}\n")
    return d


def write(tmp_path: Path, result: TestResult | None = None) -> Path:
    d = spec_dir(tmp_path)
    path = tmp_path / "out" / "b.fb"
    fb.write(
        str(path),
        spec_path=str(d / "spec.star"),
        files=[str(d / "lib" / "helpers.star"), str(d / "data.json"), str(tmp_path / "outside.json")],
        result=result or failed_result(),
        seed=42,
        variables={"MODE": "fast"},
        environment={"kernel": "6.1", "euid": 0},
        timeout=30.0,
        spec_arg="project/spec.star",
    )
    return path


def test_round_trip(tmp_path: Path) -> None:
    original = failed_result()
    path = write(tmp_path, original)
    b = fb.read(str(path))
    assert (b.test, b.seed, b.spec, b.variables, b.timeout) == ("test_x", 42, "spec.star", {"MODE": "fast"}, 30.0)
    assert b.decisions == "choose.mode=1;fires.db:write=101"
    assert b.manifest["format"] == fb.FORMAT and b.manifest["verdict"] == "fail"
    assert b.environment == {"kernel": "6.1", "euid": 0}
    assert sorted(b.files) == ["data.json", "lib/helpers.star", "spec.star"]
    assert b.files["lib/helpers.star"] == b"def helper():\n    return 1\n"
    assert b.skipped == [{"path": str(tmp_path / "outside.json"), "why": "outside the spec's directory"}]
    assert b.result.to_dict() == original.to_dict()  # every event, fault, diagnostic and the violation
    run = b.run_result()
    assert run.tests == [b.result] and run.seed == 42 and run.spec == "project/spec.star"
    assert int(run.exit_code) == 2
    # extracted, the files stand where the spec looks for them
    extracted = Path(b.extract(str(tmp_path / "x")))
    assert extracted == tmp_path / "x" / "spec.star"
    assert (tmp_path / "x" / "lib" / "helpers.star").read_text() == "def helper():\n    return 1\n"


def test_the_same_failure_makes_the_same_entries(tmp_path: Path) -> None:
    """Entries carry no build time: two bundles of one result differ only in the manifest's created."""
    path = write(tmp_path)
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist()[:4] == [fb.MANIFEST, fb.ENVIRONMENT, fb.RESULT, fb.TRACE]
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert len(zf.read(fb.TRACE).splitlines()) == 30


def test_spec_files_are_the_spec_what_it_loads_and_the_data_it_reads(tmp_path: Path) -> None:
    d = spec_dir(tmp_path)
    (d / "spec.star").write_text(
        'load("lib/helpers.star", "helper")\nload("@faultbox/services.star", "postgres")\n'
        'cfg = load_json("data.json")\ntext = load_file("lib/../data.json")\nother = load_yaml("../outside.json")\n'
    )
    spec = load_spec(str(d / "spec.star"))
    assert spec_files(spec) == [
        str(d / "spec.star"),
        str(d / "lib" / "helpers.star"),
        str(d / "data.json"),
        str(tmp_path / "outside.json"),
    ]  # the stdlib ships with faultbox: not a file of the spec


def test_file_names_and_what_reads_as_a_bundle(tmp_path: Path) -> None:
    assert fb.file_name("test_matrix_a/b c", 7) == "test_matrix_a_b_c-7.fb"
    path = write(tmp_path)
    renamed = tmp_path / "bundle.zip"
    renamed.write_bytes(path.read_bytes())
    assert fb.is_bundle(str(path)) and fb.is_bundle(str(renamed))
    (tmp_path / "r.json").write_text("{}")
    assert not fb.is_bundle(str(tmp_path / "r.json"))


def error_of(path: Path) -> tuple[Code, str]:
    with pytest.raises(fb.BundleError) as caught:
        fb.read(str(path))
    return caught.value.code, caught.value.message


def rezip(src: Path, dst: Path, change: Any) -> Path:
    """A copy of a bundle with its entries passed through change(name, data) -> (name, data) | None."""
    with zipfile.ZipFile(src) as zf:
        items = [(n, zf.read(n)) for n in zf.namelist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        for name, data in items:
            changed = change(name, data)
            if changed is not None:
                out.writestr(*changed)
    dst.write_bytes(buffer.getvalue())
    return dst


def test_not_a_bundle(tmp_path: Path) -> None:
    text = tmp_path / "spec.star"
    text.write_text("def test_x(): pass\n")
    code, message = error_of(text)
    assert code is Code.BUNDLE_UNREADABLE
    assert message == f"{text}: not a faultbox bundle (a bundle is a zip archive; this is not one)"
    code, message = error_of(tmp_path / "missing.fb")
    assert code is Code.BUNDLE_UNREADABLE and "missing.fb: No such file" in message
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "hi")
    assert error_of(other)[1] == f"{other}: a zip archive, but not a faultbox bundle (it has no manifest.json)"


def test_truncated_and_corrupt(tmp_path: Path) -> None:
    path = write(tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "cut.fb"
    cut.write_bytes(data[: len(data) // 2])
    cut_error = f"{cut}: a zip archive cut short or damaged (its directory is missing)"
    assert error_of(cut) == (Code.BUNDLE_UNREADABLE, cut_error)
    # a byte flipped inside the trace's compressed data: its checksum no longer holds
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(fb.TRACE)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    damaged = bytearray(data)
    damaged[start + info.compress_size // 2] ^= 0xFF
    bad = tmp_path / "bad.fb"
    bad.write_bytes(bytes(damaged))
    code, message = error_of(bad)
    assert code is Code.BUNDLE_UNREADABLE and message.startswith(f"{bad}: damaged: trace.jsonl cannot be read")


def test_damaged_parts(tmp_path: Path) -> None:
    path = write(tmp_path)
    no_spec = rezip(path, tmp_path / "a.fb", lambda n, d: None if n == "spec/spec.star" else (n, d))
    assert error_of(no_spec)[1] == f"{no_spec}: damaged: the spec spec.star is not in it"
    no_trace = rezip(path, tmp_path / "b.fb", lambda n, d: None if n == fb.TRACE else (n, d))
    assert error_of(no_trace)[1] == f"{no_trace}: damaged: trace.jsonl is missing"
    garbled = rezip(path, tmp_path / "c.fb", lambda n, d: (n, b"{not json") if n == fb.RESULT else (n, d))
    assert error_of(garbled)[1].startswith(f"{garbled}: damaged: result.json is not JSON")
    escape = rezip(path, tmp_path / "d.fb", lambda n, d: ("spec/../../evil.sh", d) if n == "spec/data.json" else (n, d))
    assert "would land outside the spec's directory" in error_of(escape)[1]
    no_format = rezip(path, tmp_path / "e.fb", lambda n, d: (n, b'{"test": "x"}') if n == fb.MANIFEST else (n, d))
    no_format_error = f"{no_format}: manifest.json is not a faultbox bundle's manifest (it has no format)"
    assert error_of(no_format)[1] == no_format_error


@pytest.mark.parametrize(("fmt", "words"), [(fb.FORMAT + 1, "upgrade faultbox to read it"), (0, "is older than")])
def test_a_format_this_faultbox_does_not_read(tmp_path: Path, fmt: int, words: str) -> None:
    path = write(tmp_path)

    def bump(name: str, data: bytes) -> tuple[str, bytes]:
        if name != fb.MANIFEST:
            return name, data
        manifest = json.loads(data)
        manifest.update(format=fmt, faultbox="9.9.9")
        return name, json.dumps(manifest).encode()

    other = rezip(path, tmp_path / "v.fb", bump)
    with pytest.raises(fb.BundleVersionError) as caught:
        fb.read(str(other))
    assert caught.value.code is Code.BUNDLE_VERSION
    assert caught.value.message.startswith(f"{other}: bundle format {fmt}, written by faultbox 9.9.9")
    assert words in caught.value.message


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    for i in range(7):
        p = tmp_path / f"t-{i}.fb"
        p.write_bytes(b"x")
        os.utime(p, ns=(i * 10**9, i * 10**9))
    (tmp_path / "notes.txt").write_text("not a bundle")
    removed = fb.prune(str(tmp_path), keep=3)
    assert sorted(Path(p).name for p in removed) == ["t-0.fb", "t-1.fb", "t-2.fb", "t-3.fb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "t-4.fb", "t-5.fb", "t-6.fb"]


class Loaded:
    def __init__(self, d: Path) -> None:
        self.path = str(d / "spec.star")
        self.modules = {self.path: None}
        self.data_files = [str(d / "data.json")]
        self.variables = {"MODE": "fast"}


def test_writer_bundles_failures_only_and_a_write_failure_is_a_warning(tmp_path: Path) -> None:
    d = spec_dir(tmp_path)
    warnings: list[str] = []
    writer = BundleWriter(Loaded(d), str(d / "spec.star"), 5, 30.0, warn=warnings.append)
    passed = TestResult("test_ok", Outcome.PASSED, seed=5)
    writer.test_finished(passed)
    errored = TestResult("test_err", Outcome.ERRORED, reason="boom", seed=5)
    writer.test_finished(errored)
    failed = failed_result("test_bad", seed=9)
    writer.test_finished(failed)
    bundles = d / ".faultbox" / "bundles"
    assert sorted(p.name for p in bundles.iterdir()) == ["test_bad-9.fb", "test_err-5.fb"]
    assert passed.bundle == "" and failed.bundle == str(bundles / "test_bad-9.fb")
    b = fb.read(failed.bundle)
    assert b.seed == 9 and sorted(b.files) == ["data.json", "spec.star"] and b.variables == {"MODE": "fast"}
    assert b.environment["python"] and "kernel" in b.environment
    assert "bundle" not in json.loads(zipfile.ZipFile(failed.bundle).read(fb.RESULT))
    assert warnings == []

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the directory would be")
    writer = BundleWriter(Loaded(d), str(d / "spec.star"), 5, 30.0, str(blocked), warn=warnings.append)
    again = failed_result()
    writer.test_finished(again)
    assert again.bundle == ""
    assert len(warnings) == 1 and warnings[0].startswith("warning: no bundle for test_x: ")


def test_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    for line in (
        f"bundle:      {path} (format 1",
        "test:        test_x",
        "verdict:     fail (failed)",
        'reason:      assert_eq failed: "a" != "b"',
        "at:          spec.star:9",
        "seed:        42",
        "decisions:   choose.mode=1;fires.db:write=101",
        "variables:   MODE=fast",
        "  lib/helpers.star  (27 bytes)",
        f"  left out: {tmp_path / 'outside.json'}: outside the spec's directory",
        "  kernel: 6.1",
        "  db.write=deny(EIO): matched 3, fired 1",
        "  warning [FAULT_NOT_FIRED] fired nothing",
        "violation:   no_eio: saw EIO",
        "last 20 events before the violation (of 30):",
        f"replay:      faultbox replay {path}",
    ):
        assert line in out, line
    shown = [ln for ln in out.splitlines() if ln.startswith("  #")]
    assert shown[0].startswith("  #6 syscall db") and shown[-1].startswith("  #25 syscall db")  # up to it

    assert main(["inspect", str(path), "--json", "--events", "3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["test"] == "test_x" and doc["seed"] == 42 and doc["variables"] == {"MODE": "fast"}
    assert [e["seq"] for e in doc["last_events"]] == [23, 24, 25]
    assert doc["files"] == {"data.json": 9, "lib/helpers.star": 27, "spec.star": 64}


def test_bad_input_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each command names the file and the code, and prints no traceback."""
    junk = tmp_path / "junk.fb"
    junk.write_bytes(b"PK\x03\x04 but nothing more")
    for argv in (["inspect", str(junk)], ["replay", str(junk)], ["report", str(junk), "--html", "x.html"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error [BUNDLE_UNREADABLE]: {junk}: a zip archive cut short"), err
        assert "Traceback" not in err


def test_replay_of_a_spec_that_no_longer_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path)
    broken = rezip(
        path, tmp_path / "broken.fb", lambda n, d: (n, b"def test_x(:\n") if n == "spec/spec.star" else (n, d)
    )
    assert main(["replay", str(broken), "--isolated"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error [BUNDLE_SPEC]: {broken}: its spec does not load any more:")
    assert "SPEC_SYNTAX" in err and "Traceback" not in err

    renamed = rezip(
        path,
        tmp_path / "renamed.fb",
        lambda n, d: (n, b"def test_y():\n    pass\n") if n == "spec/spec.star" else (n, d),
    )
    assert main(["replay", str(renamed), "--isolated"]) == 1
    assert f"{renamed}: its spec has no test named test_x any more" in capsys.readouterr().err


def test_replay_forces_the_recorded_seed_and_decisions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run itself is faked (end to end tests run real ones): what replay hands it, and how it
    judges what comes back."""
    from faultbox.runner.leaf import LeafState
    from faultbox.runner.serial import SpecRunner

    path = write(tmp_path)
    simple = rezip(
        path,
        tmp_path / "simple.fb",
        lambda n, d: (n, b"def test_x():\n    pass\n") if n == "spec/spec.star" else (n, d),
    )
    seen: list[tuple[int, str, float, str]] = []
    answers = [failed_result(), failed_result(), TestResult("test_x", Outcome.PASSED)]
    answers[1].reason = "another reason"

    def run(self: SpecRunner, name: str, seed: int | None = None, leaf: LeafState | None = None) -> TestResult:
        assert leaf is not None
        seen.append((self.seed, name, self.timeout, leaf.forced.to_text()))
        return answers[len(seen) - 1]

    monkeypatch.setattr(SpecRunner, "run", run)
    assert main(["replay", str(simple), "--isolated", "--json", str(tmp_path / "r.json")]) == 0
    assert seen == [(42, "test_x", 30.0, "choose.mode=1;fires.db:write=101")]
    out = capsys.readouterr().out
    assert "reproduced: the replay ended fail for the same reason" in out
    assert json.loads((tmp_path / "r.json").read_text())["tests"][0]["replay"] == f"faultbox replay {simple}"
    assert main(["replay", str(simple), "--isolated", "--timeout", "5s"]) == 1
    assert seen[-1][2] == 5.0
    assert "did not reproduce: the replay ended fail too, but for another reason" in capsys.readouterr().out
    assert main(["replay", str(simple), "--isolated"]) == 1
    assert "did not reproduce: the recorded run ended fail, the replay pass" in capsys.readouterr().out
