"""examples/support_pipeline.py: tickets go where their issue_type says; unresolved ones are
escalated to a human."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents_testkit import example_module

from stockade.agents import Trace

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_pipeline.py"


@pytest.fixture(scope="module")
def pipeline() -> Iterator[Any]:
    with example_module(EXAMPLE, "support_pipeline_example") as module:
        yield module


def ticket(pipeline: Any, issue_type: str, description: str) -> Any:
    return pipeline.SupportTicket("T-9", issue_type, description, 2)


def handle(pipeline: Any, item: Any, **options: Any) -> tuple[Any, Any]:
    return asyncio.run(pipeline.handle(item, **options))


def test_billing_tickets_go_to_billing_and_are_resolved(pipeline: Any) -> None:
    chat, result = handle(pipeline, ticket(pipeline, "billing", "charged twice"))
    assert chat.state.speakers == ["triage", "billing_agent"]
    assert result.termination == "completed"
    assert result.messages[-1].recipients == ("user",)
    assert "refunded" in result.messages[-1].content
    tool_calls = result.trace.of_kind("tool_call")
    assert [c.tool for c in tool_calls] == ["refund_last_charge"]
    assert '"T-9"' in tool_calls[0].arguments
    routes = [(e.sender, e.targets) for e in result.trace.of_kind("routing")]
    assert routes[:2] == [("user", ["triage"]), ("triage", ["billing_agent"])]


def test_technical_tickets_go_to_the_tech_agent(pipeline: Any) -> None:
    chat, result = handle(pipeline, ticket(pipeline, "technical", "VPN drops after sleep"))
    assert chat.state.speakers == ["triage", "tech_agent"]
    assert result.termination == "completed"
    assert "VPN client" in result.messages[-1].content


def test_a_ticket_nobody_takes_stalls_into_escalation_and_a_human(pipeline: Any) -> None:
    chat, result = handle(pipeline, ticket(pipeline, "account", "merge my accounts"))
    assert chat.state.speakers == ["triage", "escalation"]
    assert result.termination == "handoff"
    assert result.handoff.agent == "escalation"
    assert "T-9 (account)" in result.handoff.reason
    stall = [e for e in result.trace.of_kind("routing") if e.reason == "stalled"]
    assert [e.targets for e in stall] == [["escalation"]]
    done = asyncio.run(chat.resume("Merged."))
    assert done.termination == "completed"
    assert done.messages[-1].content == "Update from our support team: Merged."
    assert chat.runtime.memory.get("escalation", "T-9")["escalated"] is True


def test_a_ticket_unresolved_within_max_turns_is_escalated(pipeline: Any, tmp_path: Path) -> None:
    unknown = ticket(pipeline, "technical", "the app freezes on reports")
    chat, result = handle(pipeline, unknown, max_turns=5, workdir=tmp_path)
    assert chat.state.speakers == ["triage", "tech_agent", "tech_agent", "tech_agent", "escalation"]
    assert result.termination == "handoff" and result.turns == 5
    override = [e for e in result.trace.of_kind("routing") if e.overridden_by]
    assert [(e.proposed, e.targets) for e in override] == [(["tech_agent"], ["escalation"])]
    assert len(Trace.read(tmp_path / "T-9.jsonl").of_kind("handoff")) == 1


def test_the_example_runs_as_printed(
    pipeline: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(pipeline.main(tmp_path))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "T-1 billing: triage → billing_agent: completed"
    assert lines[2] == "T-2 technical: triage → tech_agent: completed"
    assert lines[4] == "T-3 account: triage → escalation: handoff"
    assert lines[6] == "T-4 technical: triage → tech_agent → escalation: handoff"
    assert lines[7].startswith("    human replied: completed - Update from our support team:")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"T-{n}.jsonl" for n in range(1, 5)]
