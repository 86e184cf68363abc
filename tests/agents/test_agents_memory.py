"""Memory persists in SQLite across sessions: two runtimes, one file."""

from __future__ import annotations

import asyncio
from pathlib import Path

from stockade.agents import ChatAgent, Context, GroupChat, Memory, Message, ScriptedModel


class Notetaker(ChatAgent):
    """Counts visits in memory and answers with the model."""

    async def on_message(self, message: Message, ctx: Context) -> None:
        ctx.memory.set("visits", ctx.memory.get("visits", 0) + 1)
        await ctx.reply(await self.process_with_tools(message))


def session(db: Path, answer: str) -> tuple[GroupChat, ScriptedModel]:
    model = ScriptedModel([answer])
    chat = GroupChat([Notetaker("notes", model=model)], routing="role_based", memory=db)
    return chat, model


def test_memory_persists_across_two_runtimes_on_one_file(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    first, _ = session(db, "Noted: the sky is blue.")
    asyncio.run(first.run("remember: the sky is blue"))
    first.runtime.memory.close()

    second, model = session(db, "You said the sky is blue.")
    asyncio.run(second.run("what did I say?"))
    assert second.runtime.memory.get("notes", "visits") == 2
    assert second.runtime.memory.session != first.runtime.memory.session
    prompt = [m["content"] for m in model.calls[0][0]]
    assert prompt == ["remember: the sky is blue", "Noted: the sky is blue.", "what did I say?"]
    history = second.runtime.memory.history("notes")
    assert [role for role, _ in history] == ["received", "sent", "received", "sent"]


def test_in_memory_store_is_private_to_its_object() -> None:
    a, b = Memory(), Memory(":memory:")
    a.set("x", "k", 1)
    assert b.get("x", "k") is None
    assert a.for_agent("x").keys() == ["k"]


def test_dump_and_restore_merge_without_duplicates(tmp_path: Path) -> None:
    source = Memory(tmp_path / "a.db")
    source.set("agent", "k", [1, 2])
    target = Memory(tmp_path / "b.db")
    target.restore(source.dump())
    target.restore(source.dump())
    assert target.get("agent", "k") == [1, 2]
    assert target.dump() == source.dump()
    view = target.for_agent("agent")
    view.delete("k")
    assert view.get("k", "gone") == "gone"
