"""`stockade.ray` on a local Ray cluster of two nodes (`ray.cluster_utils.Cluster`): runs,
sessions routed to the actor that holds them, `map` with a node removed in the middle (each
job once, none lost), `sandbox batch --ray`, and the actors' sandboxes forked by the spawn
server (a Ray worker has many threads)."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

try:
    import ray
    from ray.cluster_utils import Cluster
except ImportError as exc:  # the `ray` extra is in `test`; say so if it could not install
    pytest.skip(
        f"Ray is not installed (pip install 'stockade[ray]'): {exc}", allow_module_level=True
    )

from stockade import Policy, SessionError, Status
from stockade.ray import RaySandbox

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)"),
    # Ray starts and keeps worker processes of its own across tests: this module checks what
    # its sandboxes leave (run dirs, cgroups) itself, once the cluster is down.
    pytest.mark.no_leak_check,
]

POLICY = Policy.load("default").override(timeout=10)


def _ours() -> set[str]:
    """Run dirs and cgroups of live or dead stockade supervisors."""
    cgroups = set()
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        if os.path.basename(root) == "stockade":
            cgroups.update(os.path.join(root, d) for d in dirs)
            dirs.clear()
    return set(glob.glob("/tmp/stockade-[0-9]*")) | cgroups


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    before = _ours()
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    ray.init(address=nodes.address, logging_level="warning", log_to_driver=False)
    try:
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()
    deadline = time.monotonic() + 20
    while (left := _ours() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"the actors' sandboxes left {left}"


@pytest.fixture(scope="module")
def cluster_box(cluster: Cluster) -> Iterator[RaySandbox]:
    with RaySandbox(POLICY, pool_per_node=2) as box:
        yield box


def test_one_actor_per_node_runs_code_and_commands(cluster_box: RaySandbox) -> None:
    assert len(cluster_box.nodes()) == 2
    assert cluster_box.run_code("print(6 * 7)").stdout == "42\n"
    assert cluster_box.run(["sh", "-c", "echo $((1 + 1))"]).stdout == "2\n"
    assert cluster_box.run_code("while True: pass", timeout=0.3).status is Status.TIMEOUT
    assert asyncio.run(cluster_box.arun_code("print('async')")).stdout == "async\n"
    with pytest.raises(ValueError, match="timeout"):
        cluster_box.run_code("1", timeout="soon")


def test_actors_start_their_sandboxes_through_the_spawn_server(cluster_box: RaySandbox) -> None:
    for actor in cluster_box.nodes().values():
        info = ray.get(actor.info.remote())
        assert info["threads"] > 1  # so a fork from it could deadlock: the server must fork
        children = psutil.Process(info["pid"]).children()
        assert children, "the actor started no spawn server"
        assert all("stockade.spawn.server" in " ".join(c.cmdline()) for c in children)


def test_a_workspace_stays_on_the_actor_that_holds_it(cluster_box: RaySandbox) -> None:
    workspaces = [cluster_box.workspace() for _ in range(2)]
    assert len({w.node_id for w in workspaces}) == 2  # one on each node
    for number, workspace in enumerate(workspaces):
        workspace.write_file("mine.txt", f"workspace {number}")
        assert workspace.exec("cat mine.txt >> log; echo done").stdout == "done\n"
    assert [w.read_file("log") for w in workspaces] == [b"workspace 0", b"workspace 1"]
    assert sorted(e.name for e in workspaces[0].list()) == ["log", "mine.txt"]
    workspaces[1].import_(workspaces[0].export())  # a tar from one node to the other
    assert workspaces[1].read_file("mine.txt") == b"workspace 0"
    for workspace in workspaces:
        workspace.close()
    with pytest.raises(SessionError, match="closed"):
        workspaces[0].exec(["true"])


def test_a_session_stays_on_the_actor_that_holds_it(cluster_box: RaySandbox) -> None:
    sessions = [cluster_box.session() for _ in range(4)]
    assert len({s.node_id for s in sessions}) == 2  # spread over both nodes
    for number, session in enumerate(sessions):
        session.run(f"x = {number}")
    assert [s.run("print(x)").stdout for s in sessions] == [f"{n}\n" for n in range(4)]
    for session in sessions:
        session.close()
    with pytest.raises(SessionError, match="closed"):
        sessions[0].run("print(x)")


def test_map_over_both_nodes_gives_each_result_once(cluster_box: RaySandbox) -> None:
    jobs = [{"id": n, "code": f"import sys; print({n}); sys.exit({n % 3})"} for n in range(300)]
    jobs.append({"id": "bad", "code": "1", "memory": "lots"})
    got = {}
    for done in cluster_box.map(jobs, progress=False):
        assert done.id not in got
        got[done.id] = done.result
    assert set(got) == {*range(300), "bad"}
    assert all(got[n].stdout == f"{n}\n" and got[n].exit_code == n % 3 for n in range(300))
    assert got["bad"].status is Status.SETUP_FAILED and got["bad"].error.startswith("memory")


def test_a_node_lost_mid_batch_loses_no_job_and_reports_none_twice(cluster: Cluster) -> None:
    extra = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    code = "import time; time.sleep(0.05); print({})"
    jobs = [{"id": n, "code": code.format(n)} for n in range(240)]
    with RaySandbox(POLICY, pool_per_node=2) as box:
        assert len(box.nodes()) == 3
        seen: list[object] = []
        for done in box.map(jobs, progress=False):
            assert done.result.status is Status.OK and done.result.stdout == f"{done.id}\n"
            seen.append(done.id)
            if len(seen) == 30:
                cluster.remove_node(extra)  # its actor's chunks in flight are lost with it
        assert len(box.nodes()) == 2
    assert sorted(seen) == list(range(240))


def test_a_chunk_lost_three_times_gets_results_that_say_so(cluster_box: RaySandbox) -> None:
    from stockade.batch.jobs import Job
    from stockade.ray.cluster import TRIES, _Batch

    batch = _Batch(cluster_box, [], None)
    chunk = [Job(id="a", code="1"), Job(id="b", code="1")]
    for _ in range(TRIES - 1):
        assert list(batch._again(chunk)) == []  # sent again
    assert list(batch.waiting) == [chunk] * (TRIES - 1)
    last = {done.id: done.result for done in batch._again(chunk)}
    assert set(last) == {"a", "b"}
    assert all(r.status is Status.SETUP_FAILED and "lost 3 times" in r.error for r in last.values())


def test_sandbox_batch_runs_on_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    jobs = [{"id": f"j{n}", "code": f"print({n})"} for n in range(40)]
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(job) + "\n" for job in jobs))
    command = ["batch", "jobs.jsonl", "--out", "out.jsonl", "--ray", cluster.address]
    done = subprocess.run(
        [sys.executable, "-m", "stockade", *command],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(line["id"] for line in out) == sorted(job["id"] for job in jobs)
    assert all(line["stdout"] == f"{line['id'][1:]}\n" for line in out)
