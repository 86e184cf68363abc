"""Typed messages: validation on send, the envelope, and the JSON round trip."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Literal

import pytest
from agents_testkit import Say, Ticket
from hypothesis import given
from hypothesis import strategies as st

from stockade.agents import (
    ConfigError,
    Context,
    Message,
    MessageValidationError,
    Runtime,
    StateError,
    TextMessage,
    UnknownAgentError,
)
from stockade.agents.messages import from_dict, render, stamp, to_dict, validate


@dataclass
class Order(Message):
    sku: str
    quantity: int
    kind: Literal["retail", "wholesale"] = "retail"
    notes: list[str] = field(default_factory=list)


def test_valid_message_gets_a_fresh_envelope() -> None:
    original = Order("A-1", 3)
    sent = stamp(original, sender="shop", recipients=("stock",), parent_id="p1")
    assert (sent.sender, sent.recipients, sent.parent_id) == ("shop", ("stock",), "p1")
    assert sent.id != original.id and sent.timestamp >= original.timestamp
    assert (sent.sku, sent.quantity) == ("A-1", 3)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("message", "bad_field"),
    [
        (Order("A-1", "3"), "quantity"),  # type: ignore[arg-type]  # no coercion on send
        (Order("A-1", 3, kind="resale"), "kind"),  # type: ignore[arg-type]
        (Order(7, 3), "sku"),  # type: ignore[arg-type]
        (Order("A-1", 3, notes=[1]), "notes.0"),  # type: ignore[list-item]
        (Ticket("T", "billing", True), "priority"),  # bool is not an int here
    ],
)
def test_wrong_field_type_is_refused_naming_the_field(message: Message, bad_field: str) -> None:
    with pytest.raises(MessageValidationError) as info:
        validate(message)
    assert info.value.field == bad_field
    assert bad_field in str(info.value)
    assert type(message).__name__ in str(info.value)


def test_missing_field_is_refused_naming_the_field() -> None:
    order = Order("A-1", 3)
    del order.quantity
    with pytest.raises(MessageValidationError, match=r"Order\.quantity: Field required"):
        validate(order)


def test_subclass_without_dataclass_decorator_is_refused() -> None:
    class Sloppy(TextMessage):
        urgent: bool

    with pytest.raises(MessageValidationError, match=r"urgent.*@dataclass"):
        validate(Sloppy(content="x"))


def test_send_to_refuses_and_never_delivers() -> None:
    received: list[Message] = []

    class Sender(Say):
        async def on_message(self, message: Message, ctx: Context) -> None:
            try:
                await ctx.send_to("sink", Order("A-1", "many"))  # type: ignore[arg-type]
            except MessageValidationError as exc:
                self.state["refused"] = exc.field

    class Sink(Say):
        async def on_message(self, message: Message, ctx: Context) -> None:
            received.append(message)

    runtime = Runtime([Sender("src"), Sink("sink")])
    asyncio.run(runtime.send(TextMessage(content="go"), to="src"))
    asyncio.run(runtime.run_until_idle())
    assert runtime.agents["src"].state == {"refused": "quantity"}
    assert received == []
    assert len(runtime.conversation) == 1
    assert runtime.counters.messages == 1


def test_unknown_recipient_is_refused() -> None:
    runtime = Runtime([Say("a")])
    with pytest.raises(UnknownAgentError, match="no agent named 'b'"):
        asyncio.run(runtime.send(TextMessage(content="x"), to="b"))


def test_json_round_trip_keeps_type_envelope_and_payload() -> None:
    sent = stamp(Order("A-1", 3, notes=["gift"]), sender="a", recipients=("b",), parent_id=None)
    data = json.loads(json.dumps(to_dict(sent)))
    assert data["type"] == "Order"
    assert from_dict(data) == sent


def test_from_dict_validates_stored_data() -> None:
    data = to_dict(Order("A-1", 3))
    assert from_dict({**data, "quantity": "4"}).quantity == 4  # type: ignore[attr-defined]
    with pytest.raises(MessageValidationError, match="quantity"):
        from_dict({**data, "quantity": "four"})
    with pytest.raises(MessageValidationError, match="colour: Extra inputs"):
        from_dict({**data, "colour": "red"})
    with pytest.raises(StateError, match="unknown message type 'Nope'"):
        from_dict({**data, "type": "Nope"})


def test_two_classes_with_one_type_name_are_refused() -> None:
    with pytest.raises(ConfigError, match="two message types are named 'Order'"):

        @dataclass
        class Order(Message):
            x: int


def test_render_for_the_model() -> None:
    assert render(TextMessage(content="hi")) == "hi"
    assert render(Order("A-1", 2)) == (
        'Order: {"kind": "retail", "notes": [], "quantity": 2, "sku": "A-1"}'
    )


@given(content=st.text(), quantity=st.integers(), notes=st.lists(st.text(), max_size=3))
def test_round_trip_property(content: str, quantity: int, notes: list[str]) -> None:
    for message in (TextMessage(content=content), Order(content, quantity, notes=notes)):
        sent = stamp(message, sender="s", recipients=("r",), parent_id="p")
        assert from_dict(json.loads(json.dumps(to_dict(sent)))) == sent
