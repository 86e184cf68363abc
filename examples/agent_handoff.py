"""A refund desk that hands large refunds to a human, saves the chat, and resumes it later.

Runs offline (scripted model). Usage: python examples/agent_handoff.py [WORKDIR]
Then: python -m stockade.agents.trace WORKDIR/refund.jsonl
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from stockade.agents import ChatAgent, Context, GroupChat, Message, ScriptedModel, TextMessage


class RefundDesk(ChatAgent):
    async def on_message(self, message: Message, ctx: Context) -> None:
        if message.sender == "human":
            await ctx.reply(await self.process_with_tools(message))  # back to the human
            await ctx.send_to("user", f"Decision: {getattr(message, 'content', '')}")
            await ctx.stop("refund decided")
        else:
            ctx.memory.set("last_request", getattr(message, "content", ""))
            await ctx.send_to("user", "A colleague will look at this refund.")
            await ctx.handoff("refund above 100 EUR")


def build(workdir: Path) -> GroupChat:
    desk = RefundDesk("refund_desk", model=ScriptedModel(["Thanks, noted."]))
    return GroupChat(
        [desk],
        routing="role_based",
        memory=workdir / "memory.db",
        trace=workdir / "refund.jsonl",
    )


async def main(workdir: Path) -> None:
    chat = build(workdir)
    first = await chat.run(TextMessage(content="Please refund 250 EUR for order 17"))
    print(first.termination, "-", first.detail)
    (workdir / "chat.json").write_text(json.dumps(chat.save_state()))

    later = build(workdir)  # e.g. another process, hours later
    later.load_state(json.loads((workdir / "chat.json").read_text()))
    done = await later.resume("approved")
    print(done.termination, "-", done.detail)
    print("last request in memory:", later.runtime.memory.get("refund_desk", "last_request"))


if __name__ == "__main__":
    given = len(sys.argv) > 1
    target = Path(sys.argv[1]) if given else Path(tempfile.mkdtemp(prefix="agent-handoff-"))
    asyncio.run(main(target))
    if not given:  # a directory of our own: keep only the trace, which the line below names
        for name in ("memory.db", "chat.json"):
            (target / name).unlink(missing_ok=True)
    print(f"trace: python -m stockade.agents.trace {target / 'refund.jsonl'}")
