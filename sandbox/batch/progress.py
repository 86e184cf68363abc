"""A batch's progress bar: tqdm's, on stderr when stderr is a terminal; nothing otherwise
(a log file or a pipe gets no carriage-return noise)."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    """Counts finished jobs; shows them only on a terminal."""

    def __init__(self, enabled: bool, total: int | None, unit: str = "job") -> None:
        self._bar: Any = None
        self.failed = 0  # jobs whose status is not ok, shown beside the count
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm  # lazily: only a terminal shows one

            self._bar = tqdm(total=total, unit=unit, dynamic_ncols=True, file=sys.stderr)

    def done(self, failed: bool) -> None:
        if self._bar is not None:
            self.failed += failed
            if self.failed:
                self._bar.set_postfix(not_ok=self.failed, refresh=False)
            self._bar.update()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
