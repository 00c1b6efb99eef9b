"""What faultbox's own processes decline to import.

The Kafka codec (kio) registers strategies for its types with hypothesis whenever hypothesis can be
imported. Where hypothesis is installed (a developer's environment often has it), that import takes
about 0.6 s of CPU, in every process that checks or proxies a Kafka fault: the CLI, each test
worker, the proxy process. None of them ever generates test data, so each entry point makes
hypothesis unimportable for itself. A process faultbox shares (pytest with faultbox's plugin) keeps
it: its tests may use hypothesis.
"""

from __future__ import annotations

import sys


def decline_test_data_generators() -> None:
    if "hypothesis" not in sys.modules:
        sys.modules["hypothesis"] = None  # type: ignore[assignment]  # None there: `import` fails
