"""`sandbox batch JOBS.jsonl --out RESULTS.jsonl`: a batch from a file of JSON lines.

Each line of JOBS is one job's JSON object (`jobs.FIELDS`); each line of RESULTS is one
finished job: its `id`, then its Result's JSON object (the `--json` form). A line that is
not a job gets a line of its own (`setup_failed`, the line's number and what is wrong),
never the end of the batch. Results are appended and flushed as jobs finish, so an
interrupted batch keeps what is done, and `--resume` runs only the jobs whose ids RESULTS
does not hold yet. The command exits 0 when every job has its line, 125 for its own
failures (bad usage, an unreadable JOBS, RESULTS there already without --resume), 130 when
interrupted."""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from collections.abc import Iterator
from typing import IO, Any

from stockade.batch.engine import default_concurrency
from stockade.batch.jobs import Job, JobId, JobResult, as_job, rejected
from stockade.batch.progress import Progress
from stockade.errors import PolicyError


class Done:
    """What RESULTS holds already: the ids, and the line numbers of JOBS' refused lines."""

    def __init__(self) -> None:
        self.ids: set[JobId] = set()
        self.lines: set[int] = set()


def main(args: argparse.Namespace, policy: Any) -> int:
    """Run the batch `args` describe under `policy` (the command line's, flags applied)."""
    concurrency = _concurrency(args.concurrency)
    total = _count_lines(args.jobs)
    done = _open_results(args.out, args.resume)
    with open(args.out, "a", encoding="utf-8") as out, open(args.jobs, encoding="utf-8") as jobs:
        refused: collections.deque[tuple[int, JobId | None, str]] = collections.deque()
        pending = _jobs(jobs, done, refused)
        bar = Progress(True, total - len(done.ids) - len(done.lines), unit="job")
        counts: collections.Counter[str] = collections.Counter()
        try:
            for finished in _results(args, policy, pending, concurrency):
                _write(out, finished.to_dict(), counts, bar)
                _write_refused(out, refused, counts, bar)
            _write_refused(out, refused, counts, bar)
        finally:
            bar.close()
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none to run"
    print(f"sandbox: batch: {sum(counts.values())} jobs ({summary})", file=sys.stderr)
    return 0


def _results(
    args: argparse.Namespace, policy: Any, jobs: Iterator[Job], concurrency: int
) -> Iterator[JobResult]:
    if args.ray is not None:
        from stockade.ray import RaySandbox

        given = concurrency if args.concurrency is not None else None  # else: per node
        with RaySandbox(policy, address=args.ray) as cluster:
            yield from cluster.map(jobs, concurrency=given, progress=False)
        return
    from stockade.runner import Sandbox

    pooled = not policy.network.allow  # a pool's sandboxes would share an allowlist's budgets
    with Sandbox(policy, pool=concurrency if pooled else 0) as box:
        yield from box.map(jobs, concurrency=concurrency, progress=False)


def _jobs(
    lines: IO[str], done: Done, refused: collections.deque[tuple[int, JobId | None, str]]
) -> Iterator[Job]:
    """The jobs of JOBS still to run; a refused line goes to `refused` instead. Read by
    map's worker threads (one at a time), so the deque is how they hand those over."""
    seen: dict[JobId, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or number in done.lines:
            continue
        try:
            job = _parse(line, number)
        except PolicyError as exc:
            refused.append((number, _id_in(line), f"line {number}: {exc}"))
            continue
        if job.id in done.ids:
            continue
        if job.id in seen:
            why = f"line {number}: id: {job.id!r} is also the id of line {seen[job.id]}"
            refused.append((number, job.id, why))
            continue
        seen[job.id] = number
        yield job


def _parse(line: str, number: int) -> Job:
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise PolicyError("JOBS", f"not a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyError("JOBS", f"expected a JSON object, got {type(data).__name__}")
    return as_job(data, number)


def _id_in(line: str) -> JobId | None:
    try:
        found = json.loads(line).get("id")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str | int) and not isinstance(found, bool) else None


def _write(
    out: IO[str], line: dict[str, Any], counts: collections.Counter[str], bar: Progress
) -> None:
    out.write(json.dumps(line) + "\n")
    out.flush()  # an interrupted batch keeps every line written so far
    counts[line["status"]] += 1
    bar.done(line["status"] != "ok")


def _write_refused(
    out: IO[str],
    refused: collections.deque[tuple[int, JobId | None, str]],
    counts: collections.Counter[str],
    bar: Progress,
) -> None:
    while refused:
        number, job_id, why = refused.popleft()
        _write(out, {"id": job_id, "line": number, **rejected(why).to_dict()}, counts, bar)


def _open_results(path: str, resume: bool) -> Done:
    """What RESULTS holds; without --resume it must not exist. A last line cut short (the
    batch was killed while writing it) is removed, and its job runs again."""
    done = Done()
    if not os.path.exists(path):
        return done
    if not resume:
        raise PolicyError("--out", f"{path!r} exists: --resume to go on with it, or remove it")
    with open(path, "rb+") as results:
        kept = 0
        for number, raw in enumerate(results, 1):
            if not raw.endswith(b"\n"):
                break  # the last line, cut short: it is dropped below
            try:
                _note(done, json.loads(raw))
            except ValueError:
                raise PolicyError("--out", f"{path!r} line {number} is not a result") from None
            kept += len(raw)
        results.truncate(kept)
    return done


def _note(done: Done, line: Any) -> None:
    if not isinstance(line, dict):
        raise ValueError(line)
    if line.get("line") is not None and line.get("status") == "setup_failed":
        done.lines.add(line["line"])
    elif line.get("id") is not None:
        done.ids.add(line["id"])


def _count_lines(path: str) -> int:
    try:
        with open(path, "rb") as jobs:
            return sum(1 for line in jobs if line.strip())
    except OSError as exc:
        raise PolicyError("JOBS", f"cannot read {path!r}: {exc.strerror}") from None


def _concurrency(value: str | None) -> int:
    if value is None:
        return default_concurrency()
    if not value.isdigit() or int(value) < 1:
        raise PolicyError("--concurrency", f"expected an integer >= 1, got {value!r}")
    return int(value)
