"""Plan fan-out through real runs: named choose() sites and max_fires= faults make a test run once
per leaf, each with fresh services and its decisions forced, and the result lists every leaf."""

from __future__ import annotations

from support import free_port, svc_decl


def test_choose_fans_out_one_leaf_per_option_and_reports_the_failing_one(run) -> None:
    spec = """
def test_modes():
    mode = choose("mode", ["fast", "safe", "slow"])
    size = choose("size", [1, 2])
    anon = choose(["a", "b"])          # anonymous: option 0, no fan-out
    assert_eq(anon, "a")
    assert_true(nondet_free(mode, size), "mode=%s size=%d" % (mode, size))

def nondet_free(mode, size):
    return not (mode == "slow" and size == 2)
"""
    res = run(svc_decl("a", free_port()) + spec)
    t = res.test("modes")
    assert t.outcome.value == "failed", t.reason
    assert "mode=slow size=2" in t.reason
    assert len(t.leaves) == 7  # the discovery run and 3 x 2 leaves
    assert t.leaves[0].label == "discovery"
    failing = [leaf for leaf in t.leaves if leaf.outcome.value != "passed"]
    assert [leaf.label for leaf in failing] == ['mode="slow", size=2']
    assert failing[0].decisions == "choose.mode=2;choose.size=1"
    assert "--leaf 'choose.mode=2;choose.size=1'" in failing[0].replay
    assert t.decisions == "choose.mode=2;choose.size=1"  # the result is the failing leaf's
    choices = [e for e in t.events if e.type == "choice"]
    assert [(e.fields["name"], e.fields["value"]) for e in choices] == [("mode", '"slow"'), ("size", "2")]


def test_a_test_without_sites_runs_once(run) -> None:
    res = run(svc_decl("a", free_port()) + "def test_plain():\n    assert_eq(choose([1, 2]), 1)\n")
    t = res.test("plain")
    assert t.outcome.value == "passed", t.reason
    assert t.leaves == [] and t.decisions == ""


def test_max_fires_explores_which_occurrences_fire(run, tmp_path) -> None:
    """deny(probability=, max_fires=2): four leaves, each firing a different subset of the first two
    writes; the supervisor decides each occurrence as the leaf says."""
    target = tmp_path / "data"
    spec = (
        svc_decl("a", free_port())
        + f"""
def test_writes():
    def body():
        return a.main.send("RESULTS {target} 3")
    out = fault(a, write = deny("EIO", probability = "50%", max_fires = 2, label = "w"), run = body)
    print(out)
    assert_true(out != "EIO,EIO,ok" and out != "EIO,EIO,EIO", out)
"""
    )
    res = run(spec, seed=7)
    t = res.test("writes")
    by_label = {leaf.label: leaf for leaf in t.leaves[1:]}
    assert sorted(by_label) == ["w=fire/fire", "w=fire/skip", "w=skip/fire", "w=skip/skip"]
    assert by_label["w=fire/fire"].outcome.value == "failed", by_label["w=fire/fire"].reason
    for label in ("w=fire/skip", "w=skip/fire", "w=skip/skip"):
        assert by_label[label].outcome.value == "passed", (label, by_label[label].reason)
    assert t.decisions == "fires.w=11"
    printed = t.details["printed"][-1]
    assert printed.startswith("EIO,EIO,"), printed


def test_choose_refuses_what_cannot_fan_out(run, tmp_path) -> None:
    from faultbox.errors import SpecError
    from faultbox.spec import load_spec

    path = tmp_path / "top.star"
    path.write_text('mode = choose("mode", ["a", "b"])\n')
    try:
        load_spec(str(path))
    except SpecError as exc:
        text = exc.render()
        assert "top.star:1" in text and "does not fan out" in text and "inside the test" in text, text
    else:
        raise AssertionError("a named choose() at the top level loaded")
    res = run(svc_decl("a", free_port()) + 'def test_one():\n    choose("mode", ["only"])\n')
    t = res.test("one")
    assert t.outcome.value in ("failed", "errored") and "at least two options" in t.reason, t.reason
    assert t.location.endswith("spec.star:3"), t.location


def test_shrinking_finds_the_fault_that_matters_and_the_fewest_fires(write_spec, tmp_path) -> None:
    """Two faults fire and either breaks the check alone: shrinking leaves one of them out (and
    never the last). A leaf firing all three writes shrinks to one fire."""
    from faultbox.model.decisions import Decisions
    from faultbox.runner.serial import SpecRunner
    from faultbox.spec import load_spec

    target = tmp_path / "data"
    spec = (
        svc_decl("a", free_port())
        + f"""
def test_two_faults():
    out = fault(a, fsync = deny("EIO", path = "{target}"), close = deny("EIO", path = "{target}"),
                run = lambda: a.main.send("RESULTS {target} 2"))
    assert_eq(out, "ok,ok")

def test_fires():
    out = fault(a, write = deny("EIO", probability = "50%", max_fires = 3, label = "w"),
                run = lambda: a.main.send("RESULTS {target} 3"))
    assert_eq(out, "ok,ok,ok")
"""
    )
    loaded = load_spec(str(write_spec(spec)))
    with SpecRunner(loaded, 5, 60.0, shrink=10) as runner:
        two = runner.run_repeated("test_two_faults", 1)
        assert two.outcome.value == "failed", two.reason
        assert two.shrunk is not None, two.reason
        assert two.shrunk.decisions in ("off.a:fsync=1", "off.a:close=1"), two.shrunk
        assert f"--leaf '{two.shrunk.decisions}'" in two.shrunk.replay
        assert two.shrunk.runs == 1  # the one fault left is never left out
        assert two.shrunk.removed == "without " + two.shrunk.decisions[4:-2]
    with SpecRunner(loaded, 5, 60.0, shrink=10, leaf=Decisions.from_text("fires.w=111")) as runner:
        fires = runner.run_repeated("test_fires", 1)
        assert fires.outcome.value == "failed", fires.reason
        assert fires.shrunk is not None
        assert fires.shrunk.decisions == "fires.w=001", fires.shrunk
        assert fires.shrunk.removed == "w fires 1 of 3 (was 3)"


def test_assume_sees_the_leafs_choices_and_halts_the_leaves_it_rules_out(run) -> None:
    spec = (
        svc_decl("a", free_port())
        + """
def body():
    mode = choose("mode", ["fast", "safe", "broken"])
    assert_true(mode != "broken", "the broken mode ran")

test("modes", body = body, assume = [lambda c: c.get("mode") != "broken"])
"""
    )
    t = run(spec).test("modes")
    assert t.outcome.value == "passed", t.reason
    by_label = {leaf.label: leaf.outcome.value for leaf in t.leaves[1:]}
    assert by_label == {'mode="fast"': "passed", 'mode="safe"': "passed", 'mode="broken"': "halted"}, by_label
