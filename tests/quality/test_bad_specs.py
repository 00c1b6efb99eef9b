"""Bad specs (issue 13): more than 10,000 broken specs - seeded mutations of the examples, the seed
page's specs, the tutorial and the spec corpus (tests/quality/bad_spec_corpus.py says how) - each
loaded as `faultbox check` loads it and planned as `faultbox test` plans it. None may end in a
traceback or hang; every refusal carries a code, a file:line of the user's spec and a fix.

    .venv/bin/python -m pytest tests/quality/test_bad_specs.py -s      prints the counts
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from bad_spec_corpus import HANG_SECONDS, OPERATORS, SEED, generate, mutants_of, run, units

CORPUS_SIZE = 10_000


@pytest.mark.slow
def test_broken_specs_are_refused_with_a_code_a_line_and_a_fix_never_a_traceback_or_a_hang(tmp_path: Path) -> None:
    mutants = generate()
    assert len(mutants) >= CORPUS_SIZE
    kinds = Counter(m.mutation.split()[0] for m in mutants)
    assert len(kinds) >= len(OPERATORS), kinds  # every operator made mutants

    report = run(mutants)
    summary = report.summary()
    print("\n" + summary)

    assert len(report.outcomes) == len(mutants), summary
    failures = report.failures()
    for outcome in failures:
        (tmp_path / f"mutant_{outcome.mutant.index}.star").write_text(outcome.mutant.text)
    assert not failures, (
        f"{summary}\n(a hang: no answer within {HANG_SECONDS:.0f}s.) The failing mutants are in {tmp_path}; "
        "reproduce one with: .venv/bin/python tests/quality/bad_spec_corpus.py run N"
    )
    # A corpus of broken specs: most are refused, and the refusals exercise every stage.
    assert report.count("error") > len(mutants) // 2, summary
    codes = {o.code for o in report.outcomes if o.kind == "error"}
    assert {"SPEC_SYNTAX", "SPEC_NOT_STARLARK", "SPEC_UNDEFINED", "SPEC_BAD_ARGUMENT", "SPEC_LOAD_FAILED"} <= codes


def test_the_corpus_is_the_same_in_every_run() -> None:
    seed_page = next(u for u in units() if u.target == "orders/seed_page.star")
    assert mutants_of(seed_page, SEED) == mutants_of(seed_page, SEED)
    assert mutants_of(seed_page, SEED) != mutants_of(seed_page, SEED + 1)
