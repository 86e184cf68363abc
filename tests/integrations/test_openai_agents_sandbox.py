"""The OpenAI Agents SDK sandbox client over a Stockade workspace: a `SandboxAgent` driven by
the SDK's `agents.testing.ScriptedModel` runs its shell and patch tools in real confinement,
and the session's lifecycle (manifest, files, snapshots, resume, timeouts) holds as the SDK's
base class expects.

The SDK ships no conformance suite for sandbox clients (`agents.testing.sandbox` is a scripted
double of a session, not a check of one); its repository's own lifecycle check is
`tests/sandbox/integration_tests/test_runner_pause_resume.py`, written for UnixLocal alone.
`test_a_paused_run_resumes_in_a_fresh_workspace` runs its steps here: the manifest's file, dir
(with an ephemeral child), local file and local dir are materialized; a file written, a patch
applied and an archive extracted survive a pause (an approval) and a resume in a new
workspace; reads, writes and patches outside the root are refused. Left out, with the reason:
its git repo and S3/GCS/R2/Azure mounts (they run git and rclone inside the sandbox over the
network, which a policy without an allowlist does not have), its PTY step (there is no PTY
here), and its host-side symlink escape (the workspace's files are not on the host)."""

from __future__ import annotations

import io
import shlex
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("agents.sandbox", reason="stockade[openai-agents] is not installed")

from adapters_testkit import TIMEOUT, Probe
from agents import RunConfig, Runner, function_tool, set_tracing_disabled
from agents.editor import ApplyPatchOperation
from agents.items import ToolCallOutputItem
from agents.run_state import RunState
from agents.sandbox import Manifest, SandboxAgent, SandboxRunConfig
from agents.sandbox.capabilities import Capability, Filesystem, Shell
from agents.sandbox.entries import Dir, File, LocalDir, LocalFile
from agents.sandbox.errors import (
    ExecTimeoutError,
    ExecTransportError,
    InvalidManifestPathError,
    WorkspaceArchiveReadError,
    WorkspaceArchiveWriteError,
    WorkspaceReadNotFoundError,
)
from agents.sandbox.session import SandboxSession
from agents.sandbox.snapshot import LocalSnapshotSpec, NoopSnapshotSpec
from agents.sandbox.types import User
from agents.testing import ScriptedModel, assistant_message, function_call
from agents.tool import Tool
from openai.types.responses import ResponseCustomToolCall

from stockade import Policy
from stockade.integrations.openai_agents_sandbox import (
    StockadeSandboxClient,
    StockadeSandboxClientOptions,
)

set_tracing_disabled(True)  # offline: no trace export
ALLOCATE = "python3 -c 'print(len(bytearray({} << 20)) >> 20, \"MiB\")'"  # the policy has 256M


@pytest.fixture
def options() -> StockadeSandboxClientOptions:
    return StockadeSandboxClientOptions(Policy.load("default").override(timeout=TIMEOUT))


@pytest.fixture
async def session(options: StockadeSandboxClientOptions) -> AsyncIterator[SandboxSession]:
    client = StockadeSandboxClient()
    manifest = Manifest(entries={"notes.txt": File(content=b"from the manifest\n")})
    made = await client.create(manifest=manifest, options=options)
    async with made:
        yield made
    await client.delete(made)


def outputs(result: object) -> list[str]:
    return [item.output for item in result.new_items if isinstance(item, ToolCallOutputItem)]  # type: ignore[attr-defined]


async def test_a_sandbox_agents_commands_run_confined(
    options: StockadeSandboxClientOptions, probe: Probe
) -> None:
    patch = "*** Begin Patch\n*** Add File: made.txt\n+written by a patch\n*** End Patch\n"
    model = ScriptedModel(
        [
            [function_call("exec_command", {"cmd": "id -un; cat notes.txt"}, call_id="c1")],
            [
                function_call(
                    "exec_command", {"cmd": f"python3 -c {shlex.quote(probe.code)}"}, call_id="c2"
                )
            ],
            [function_call("exec_command", {"cmd": ALLOCATE.format(1024)}, call_id="c3")],
            [function_call("exec_command", {"cmd": ALLOCATE.format(64)}, call_id="c3b")],
            [
                ResponseCustomToolCall(
                    type="custom_tool_call", name="apply_patch", input=patch, call_id="c4"
                )
            ],
            [function_call("exec_command", {"cmd": "cat made.txt"}, call_id="c5")],
            [assistant_message("done")],
        ]
    )
    agent = SandboxAgent(
        name="dev",
        model=model,
        default_manifest=Manifest(entries={"notes.txt": File(content=b"from the manifest\n")}),
        capabilities=[Shell(), Filesystem()],
    )
    config = SandboxRunConfig(
        client=StockadeSandboxClient(), options=options, snapshot=NoopSnapshotSpec()
    )
    result = await Runner.run(agent, "look around", run_config=RunConfig(sandbox=config))
    said = outputs(result)
    assert said[0].endswith("Output:\nsandbox\nfrom the manifest\n"), said[0]
    probe.check(said[1])  # an unprivileged uid; the host's port unreachable
    assert said[2].endswith("exited with code 137\nOutput:\nKilled\n"), said[2]  # the cgroup's
    assert said[3].endswith("exited with code 0\nOutput:\n64 MiB\n"), said[3]  # under it: fine
    assert "made.txt" in said[4], said[4]
    assert said[5].endswith("Output:\nwritten by a patch"), said[5]
    assert result.final_output == "done" and model.remaining_steps == 0


async def test_files_read_back_and_stay_inside_the_workspace(session: SandboxSession) -> None:
    await session.write(Path("dir/data.bin"), io.BytesIO(b"\x00\xff"))
    assert (await session.read(Path("/workspace/dir/data.bin"))).read() == b"\x00\xff"
    assert (await session.exec("od -An -tx1 dir/data.bin")).stdout.split() == [b"00", b"ff"]
    with pytest.raises(WorkspaceReadNotFoundError):
        await session.read(Path("missing.txt"))
    for outside in ("../etc/passwd", "/etc/passwd"):
        with pytest.raises(InvalidManifestPathError):
            await session.read(Path(outside))
        with pytest.raises(InvalidManifestPathError):
            await session.write(Path(outside), io.BytesIO(b"x"))
    await session.exec("ln -s /etc/passwd link")
    with pytest.raises(WorkspaceArchiveReadError) as caught:  # a link is never followed
        await session.read(Path("link"))
    assert caught.value.context["errno"] == "ELOOP"


async def test_a_timeout_is_exec_timeout_error(session: SandboxSession) -> None:
    with pytest.raises(ExecTimeoutError) as caught:
        await session.exec("sleep 30", timeout=1)
    assert caught.value.timeout_s == 1
    with pytest.raises(ExecTimeoutError) as caught:  # none given: the policy's
        await session.exec("sleep 30")
    assert caught.value.timeout_s == TIMEOUT
    assert (await session.exec("echo still here")).stdout == b"still here\n"


async def test_the_policys_timeout_is_a_ceiling_the_model_cannot_lift() -> None:
    """`exec_command`'s `yield_time_ms` is the model's to set: 0 has run out already (and must
    not end the run), and one past the policy's timeout gets the policy's."""
    quick = StockadeSandboxClientOptions(Policy.load("default").override(timeout=1))
    model = ScriptedModel(
        [
            [function_call("exec_command", {"cmd": "echo hi", "yield_time_ms": 0}, call_id="c1")],
            [
                function_call(
                    "exec_command",
                    {"cmd": "sleep 30; echo slept", "yield_time_ms": 60_000},
                    call_id="c2",
                )
            ],
            [assistant_message("done")],
        ]
    )
    agent = SandboxAgent(name="dev", model=model, capabilities=[Shell()])
    config = SandboxRunConfig(
        client=StockadeSandboxClient(), options=quick, snapshot=NoopSnapshotSpec()
    )
    result = await Runner.run(agent, "try", run_config=RunConfig(sandbox=config))
    said = outputs(result)
    assert "timed out" in said[0] and "hi" not in said[0], said[0]
    assert "timed out" in said[1] and "slept" not in said[1], said[1]
    assert result.final_output == "done"


async def test_cut_output_is_said(session: SandboxSession) -> None:
    done = await session.exec("yes | head -c 2M")  # past the default policy's 1M output limit
    assert done.exit_code == 0 and len(done.stdout) == 1 << 20
    assert done.stderr.endswith(b"[output truncated at the output limit]")


async def test_one_user_and_the_writable_places_only(options: StockadeSandboxClientOptions) -> None:
    client = StockadeSandboxClient()
    refused = {
        "manifest.root": Manifest(root="/home/agent"),
        "manifest.users": Manifest(users=[User(name="agent")]),
    }
    for field, manifest in refused.items():
        with pytest.raises(ValueError, match=field):
            await client.create(manifest=manifest, options=options)
    named = Manifest(root="/tmp/project", users=[User(name="sandbox")])  # run_as="sandbox"
    made = await client.create(manifest=named, options=options)
    async with made:
        assert (await made.exec("pwd; id -u", user="sandbox")).stdout.split()[0] == b"/tmp/project"
        with pytest.raises(ValueError, match="user='root'"):
            await made.exec("id", user="root")
        with pytest.raises(ValueError, match="user='root'"):
            await made.read(Path("x"), user=User(name="root"))
    await client.delete(made)
    with pytest.raises(ExecTransportError):  # its workspace is gone
        await made.exec("true")


async def test_persist_then_hydrate_moves_the_workspace(
    options: StockadeSandboxClientOptions,
) -> None:
    client = StockadeSandboxClient()
    manifest = Manifest(
        entries={
            "keep.txt": File(content=b"kept\n"),
            "scratch.txt": File(content=b"x", ephemeral=True),
        }
    )
    first = await client.create(manifest=manifest, options=options)
    async with first:
        await first.exec("mkdir -p sub && echo made > sub/run.txt && ln -s keep.txt alias")
        archive = await first.persist_workspace()
    await client.delete(first)
    tar = archive.read()
    with tarfile.open(fileobj=io.BytesIO(tar)) as opened:
        names = sorted(opened.getnames())
    assert names == ["alias", "keep.txt", "sub", "sub/run.txt"]  # relative; not the ephemeral

    second = await client.create(manifest=Manifest(), options=options)
    async with second:
        await second.hydrate_workspace(io.BytesIO(tar))
        assert (await second.exec("cat sub/run.txt alias")).stdout == b"made\nkept\n"
        bad = io.BytesIO()
        with tarfile.open(fileobj=bad, mode="w") as out:
            out.addfile(tarfile.TarInfo("../escape.txt"), io.BytesIO())
        with pytest.raises(WorkspaceArchiveWriteError):
            await second.hydrate_workspace(io.BytesIO(bad.getvalue()))
    await client.delete(second)


async def test_resume_after_delete_restores_the_snapshot_in_a_fresh_workspace(
    options: StockadeSandboxClientOptions, tmp_path: Path
) -> None:
    client = StockadeSandboxClient()
    manifest = Manifest(entries={"notes.txt": File(content=b"from the manifest\n")})
    snapshot = LocalSnapshotSpec(base_path=tmp_path)
    first = await client.create(manifest=manifest, options=options, snapshot=snapshot)
    async with first:  # leaving it persists the snapshot (stop) and ends the workspace
        await first.exec("echo written > run.txt && echo outside > /tmp/marker")
    await client.delete(first)
    payload = client.serialize_session_state(first.state)

    resumed = await client.resume(client.deserialize_session_state(payload))
    async with resumed:
        found = await resumed.exec("cat notes.txt run.txt; ls /tmp/marker")
        assert found.stdout == b"from the manifest\nwritten\n"
        assert found.exit_code != 0  # /tmp was not in the snapshot: a fresh workspace
    await client.delete(resumed)

    again = await client.resume(client.deserialize_session_state(payload))  # no snapshot there
    assert again.state.policy.limits.timeout == TIMEOUT  # the state kept the policy
    await client.delete(again)


class Probes(Capability):
    """The SDK lifecycle check's probe tools, for what the model's tools cannot reach."""

    type: str = "stockade-probes"

    def __init__(self) -> None:
        super().__init__(type="stockade-probes")

    def tools(self) -> list[Tool]:
        @function_tool(failure_error_function=None)
        async def write_note(text: str) -> str:
            await self.session.write(Path("runtime_note.txt"), io.BytesIO(text.encode()))
            return "written"

        @function_tool(failure_error_function=None)
        async def patch_and_extract() -> str:
            operations = [
                ApplyPatchOperation(type="update_file", path="inline.txt", diff="@@\n-v1\n+v2\n"),
                ApplyPatchOperation(type="delete_file", path="delete_me.txt"),
            ]
            assert await self.session.apply_patch(operations) == "Done!"
            await self.session.extract("bundle.tar", _tar({"archive/hello.txt": "hello\n"}))
            return "patched and extracted"

        @function_tool(failure_error_function=None)
        async def escape() -> str:
            for path in ("../outside.txt", "/tmp/sandbox-outside.txt"):
                for attempt in (
                    self.session.read(Path(path)),
                    self.session.write(Path(path), io.BytesIO(b"x")),
                ):
                    with pytest.raises(InvalidManifestPathError):
                        await attempt
            return "escape blocked"

        @function_tool(failure_error_function=None)
        async def tree() -> str:
            found = await self.session.exec("find . -type f | sort; cat inline.txt *note.txt")
            return found.stdout.decode()

        @function_tool(needs_approval=True)
        def approval() -> str:
            return "approved"

        return [write_note, patch_and_extract, escape, tree, approval]


async def test_a_paused_run_resumes_in_a_fresh_workspace(
    options: StockadeSandboxClientOptions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = tmp_path / "sources"
    (sources / "dir" / "nested").mkdir(parents=True)
    (sources / "file.txt").write_text("local file\n")
    (sources / "dir" / "nested" / "deep.txt").write_text("local dir\n")
    monkeypatch.chdir(tmp_path)  # local sources are found from the working directory
    manifest = Manifest(
        entries={
            "inline.txt": File(content=b"v1\n"),
            "delete_me.txt": File(content=b"gone soon\n"),
            "tree": Dir(children={"eph.txt": File(content=b"eph\n", ephemeral=True)}),
            "copied.txt": LocalFile(src=Path("sources/file.txt")),
            "copied_dir": LocalDir(src=Path("sources/dir")),
        }
    )
    client = StockadeSandboxClient()
    config = RunConfig(
        sandbox=SandboxRunConfig(
            client=client, options=options, snapshot=LocalSnapshotSpec(base_path=tmp_path)
        )
    )
    steps = [["write_note", {"text": "note-1\n"}], ["patch_and_extract", {}], ["escape", {}]]
    first_model = ScriptedModel(
        [[function_call(name, args, call_id=name)] for name, args in steps]
        + [[function_call("approval", {}, call_id="approval")]]
    )
    agent = SandboxAgent(
        name="dev", model=first_model, default_manifest=manifest, capabilities=[Probes()]
    )
    first = await Runner.run(agent, "work, then wait", run_config=config)
    assert outputs(first) == ["written", "patched and extracted", "escape blocked"]
    assert len(first.interruptions) == 1
    state = first.to_state()
    assert state._sandbox is not None and state._sandbox["backend_id"] == "stockade"

    second_model = ScriptedModel(
        [[function_call("tree", {}, call_id="tree")], [assistant_message("done")]]
    )
    agent = SandboxAgent(
        name="dev", model=second_model, default_manifest=manifest, capabilities=[Probes()]
    )
    restored = await RunState.from_json(agent, state.to_json())
    restored.approve(restored.get_interruptions()[0])
    second = await Runner.run(agent, restored, run_config=config)
    assert second.final_output == "done"
    listed = outputs(second)[-1].split()
    assert listed == [
        "./archive/hello.txt",
        "./bundle.tar",
        "./copied.txt",
        "./copied_dir/nested/deep.txt",
        "./inline.txt",
        "./runtime_note.txt",
        "./tree/eph.txt",  # ephemeral: not in the snapshot, applied again
        "v2",
        "note-1",
    ], listed


def _tar(members: dict[str, str]) -> io.BytesIO:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, text in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    archive.seek(0)
    return archive
