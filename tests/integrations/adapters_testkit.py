"""What the framework adapters' tests share besides fixtures: the limit, and the probe a
scripted model writes (the fixtures that make them are in conftest.py)."""

from __future__ import annotations

import re
from typing import NamedTuple

TIMEOUT = 3.0  # seconds: the limit every adapter's run must hold
SPIN = "while True:\n    pass\n"  # a model's snippet that only the limit ends


class Probe(NamedTuple):
    """A snippet for the model to write, and the check of what it printed."""

    code: str
    port: int

    def check(self, text: str) -> None:
        """The snippet ran as an unprivileged uid, and could not reach a port the host
        listens on (on the host, the same connect succeeds: see `host_port`)."""
        found = re.search(r"uid (\d+) connect (\d+)", text)
        assert found, text
        uid, errno = map(int, found.groups())
        assert uid != 0 and errno != 0, text
