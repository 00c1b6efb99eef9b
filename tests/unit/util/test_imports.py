"""faultbox's own processes decline hypothesis (the Kafka codec would import it for nothing)."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys
{before}
from faultbox._util.imports import decline_test_data_generators
decline_test_data_generators()
try:
    import hypothesis
except ImportError:
    print("declined")
else:
    print("imported")
"""


def _run(before: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(before=before)], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_a_process_that_declines_cannot_import_hypothesis() -> None:
    assert _run("") == "declined"


def test_a_process_that_already_uses_hypothesis_keeps_it() -> None:
    assert _run("import hypothesis") == "imported"


def test_the_kafka_codec_still_loads_without_it() -> None:
    probe = (
        "from faultbox._util.imports import decline_test_data_generators\n"
        "decline_test_data_generators()\n"
        "import faultbox.proxy.kafka_codec, sys\n"
        "print('hypothesis' in sys.modules and sys.modules['hypothesis'] is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
