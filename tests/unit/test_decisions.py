"""Decisions, sites and leaves: the text form round-trips, bad text is a clear error, and leaves
enumerate the sites' cross product in mixed-radix order."""

from __future__ import annotations

import pytest

from faultbox.model.decisions import Decisions, DecisionsError, Schedule, Site, leaf_count, leaf_decisions


def test_text_round_trip() -> None:
    text = "choose.mode=1;fires.db:write=101;order.a.star:3=pct:7:2;order.b.star:9=replay:a/b/a;order.c.star:1=perm:1/0"
    d = Decisions.from_text(text)
    assert d.choices == {"mode": 1}
    assert d.fires == {"db:write": "101"}
    assert d.orders["a.star:3"] == Schedule("pct", seed=7, depth=2)
    assert d.orders["b.star:9"].releases == ("a", "b", "a")
    assert d.orders["c.star:1"].order == (1, 0)
    assert Decisions.from_text(d.to_text()) == d
    assert not Decisions.from_text("") and Decisions.from_text(" ; ") == Decisions()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("mode=1", "not a decision"),
        ("choose.mode=x", "option's index"),
        ("fires.w=12", "0 and 1"),
        ("order.s:1=dpor", "schedule"),
        ("order.s:1=pct:x", "schedule"),
        ("nope.a=1", "not a decision"),
    ],
)
def test_bad_text_is_a_clear_error(text: str, words: str) -> None:
    with pytest.raises(DecisionsError) as info:
        Decisions.from_text(text)
    assert words in info.value.render()


def test_leaves_are_the_cross_product_first_site_slowest() -> None:
    sites = [
        Site("choose", "m", ["a", "b", "c"]),
        Site("fires", "w", ["00", "01", "10", "11"]),
        Site("order", "s:1", [Schedule("pct", seed=1), Schedule("pct", seed=2)]),
    ]
    assert leaf_count(sites) == 24
    texts = [leaf_decisions(sites, i).to_text() for i in range(24)]
    assert len(set(texts)) == 24
    assert texts[0] == "choose.m=0;fires.w=00;order.s:1=pct:1:1"
    assert texts[1] == "choose.m=0;fires.w=00;order.s:1=pct:2:1"
    assert texts[2] == "choose.m=0;fires.w=01;order.s:1=pct:1:1"
    assert texts[23] == "choose.m=2;fires.w=11;order.s:1=pct:2:1"
    assert leaf_count([]) == 1
