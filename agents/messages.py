"""Typed messages: stdlib dataclasses that subclass `Message`, validated with pydantic on send.

A message type is declared the way DESIGN.md shows::

    @dataclass
    class SupportTicket(Message):
        ticket_id: str
        priority: int
        routing_field: ClassVar[str] = "issue_type"   # optional, for role-based routing

Every message carries an envelope (sender, recipients, id, parent_id, timestamp) that the
runtime stamps when the message is sent, and an optional `intent` that the sender sets; the
payload fields are the subclass's own. On the
wire a message is a JSON object whose `type` names its class (the discriminator), so states
and traces round-trip.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import time
import typing
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pydantic
import pydantic_core

from .errors import ConfigError, MessageValidationError, StateError

ENVELOPE_FIELDS = ("sender", "recipients", "id", "parent_id", "timestamp", "intent")

_registry: dict[str, type[Message]] = {}
_field_models: dict[type[Message], type[pydantic.BaseModel]] = {}


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(kw_only=True)
class Message:
    """Base of every message. Subclass it with `@dataclass` and declare the payload fields.

    The envelope fields are keyword-only, so a subclass may declare fields without defaults.
    `intent` is the sender's word for what the message is for (`"billing"`, `"review"`); it
    is optional, kept as sent, and under role-based routing picks the agents of that role.
    `message_type` (the JSON discriminator) defaults to the class name; `routing_field` names
    a payload field whose value picks the recipient by role under role-based routing.
    """

    sender: str = ""
    recipients: tuple[str, ...] = ()
    id: str = field(default_factory=new_id)
    parent_id: str | None = None
    timestamp: float = field(default_factory=time.time)
    intent: str | None = None

    message_type: ClassVar[str] = "Message"
    routing_field: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "message_type" not in cls.__dict__:
            cls.message_type = cls.__name__
        _register(cls)


def _register(cls: type[Message]) -> None:
    # A class redefined in the same place (a reloaded module, a factory called twice)
    # replaces its old self; two different classes under one name would make stored
    # states ambiguous, so that is refused at class creation.
    old = _registry.get(cls.message_type)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ConfigError(
            f"two message types are named {cls.message_type!r}: "
            f"{old.__module__}.{old.__qualname__} and {cls.__module__}.{cls.__qualname__}",
            hint='set `message_type: ClassVar[str] = "..."` on one of them',
        )
    _registry[cls.message_type] = cls
    _field_models.pop(cls, None)


@dataclass
class TextMessage(Message):
    """Plain text, for prototyping and for what models say."""

    content: str


def as_message(message: Message | str) -> Message:
    """A plain string as a `TextMessage`; a message unchanged."""
    return TextMessage(content=message) if isinstance(message, str) else message


def message_class(type_name: str) -> type[Message]:
    """The registered class for a JSON `type`; the class's module must have been imported."""
    try:
        return _registry[type_name]
    except KeyError:
        raise StateError(
            f"unknown message type {type_name!r}: import the module that defines it first"
        ) from None


def _field_model(cls: type[Message]) -> type[pydantic.BaseModel]:
    model = _field_models.get(cls)
    if model is None:
        hints = typing.get_type_hints(cls)
        specs: dict[str, Any] = {f.name: (hints[f.name], ...) for f in dataclasses.fields(cls)}
        model = pydantic.create_model(
            f"{cls.__name__}Fields",
            __config__=pydantic.ConfigDict(
                extra="forbid", arbitrary_types_allowed=True, val_json_bytes="base64"
            ),
            **specs,
        )
        _field_models[cls] = model
    return model


def _refusal(cls: type[Message], exc: pydantic.ValidationError) -> MessageValidationError:
    fields: dict[str, str] = {}
    for err in exc.errors():
        name = ".".join(str(part) for part in err["loc"]) or "<message>"
        got = "" if err["type"] == "missing" else f" (got {err['input']!r})"
        fields.setdefault(name, f"{err['msg']}{got}")
    return MessageValidationError(cls.message_type, fields)


def validate(message: Message) -> Message:
    """A validated copy of `message`, or `MessageValidationError` naming every bad field.

    Python values are checked strictly (an `int` field refuses "3"), because a message built
    in code with the wrong type is a bug to report, not a value to coerce.
    """
    cls = type(message)
    undeclared = _undeclared_fields(cls)
    if undeclared:
        raise MessageValidationError(
            cls.message_type,
            {name: "not a dataclass field: add @dataclass to the class" for name in undeclared},
        )
    present = {
        f.name: getattr(message, f.name)
        for f in dataclasses.fields(cls)
        if hasattr(message, f.name)
    }
    return _build(cls, present, strict=True)


def _undeclared_fields(cls: type[Message]) -> list[str]:
    # A subclass that forgot @dataclass inherits its parent's fields and silently drops its
    # own annotations from validation and from the wire; catch that on the first send.
    own = inspect.get_annotations(cls)
    declared = {f.name for f in dataclasses.fields(cls)}
    return [n for n, t in own.items() if n not in declared and "ClassVar" not in str(t)]


def _build(
    cls: type[Message], data: dict[str, Any], *, strict: bool, from_json: bool = False
) -> Message:
    """`from_json`: `data` is `to_dict`'s, read back as the JSON it is (bytes from base64)."""
    try:
        model = _field_model(cls)
        if from_json:
            checked = model.model_validate_json(json.dumps(data), strict=strict)
        else:
            checked = model.model_validate(data, strict=strict)
    except pydantic.ValidationError as exc:
        raise _refusal(cls, exc) from None
    fields = dataclasses.fields(cls)
    message = cls(**{f.name: getattr(checked, f.name) for f in fields if f.init})
    for f in fields:
        if not f.init:
            object.__setattr__(message, f.name, getattr(checked, f.name))
    return message


def to_dict(message: Message) -> dict[str, Any]:
    """The JSON-ready form: `{"type": ..., envelope..., payload...}`; bytes as base64."""
    data = pydantic_core.to_jsonable_python(message, bytes_mode="base64")
    return {"type": type(message).message_type, **data}


def serialisable(message: Message) -> dict[str, Any]:
    """`to_dict`, refusing what JSON text cannot hold (text with a lone surrogate) with a
    `MessageValidationError` naming each such field."""
    values, bad = {}, {}
    for each in dataclasses.fields(message):  # field by field, to name the one at fault
        try:
            value = getattr(message, each.name)
            values[each.name] = pydantic_core.to_jsonable_python(value, bytes_mode="base64")
            json.dumps(values[each.name], ensure_ascii=False).encode()
        except (ValueError, pydantic_core.PydanticSerializationError) as exc:
            bad[each.name] = f"cannot be serialised: {exc}"
    if bad:
        raise MessageValidationError(type(message).message_type, bad)
    return {"type": type(message).message_type, **values}  # as to_dict gives it


def without_lone_surrogates(text: str) -> str:
    """`text` with each lone surrogate as U+FFFD: JSON allows "\\ud83d" and os.listdir makes
    them of undecodable names, but no UTF-8 trace or state could hold one."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def from_dict(data: dict[str, Any]) -> Message:
    """Rebuild a message from `to_dict` output, validating it (JSON values are coerced)."""
    if not isinstance(data, dict) or "type" not in data:
        raise StateError(f"not a stored message (no 'type'): {data!r:.200}")
    fields = {k: v for k, v in data.items() if k != "type"}
    return _build(message_class(data["type"]), fields, strict=False, from_json=True)


def payload(message: Message, *, shown: bool = False) -> dict[str, Any]:
    """The message's own fields, without the envelope. Bytes are base64, or with `shown`
    only their size ("<N bytes>": a file's content is no text for a model)."""
    if shown:
        data = pydantic_core.to_jsonable_python(_sized(dataclasses.asdict(message)))
    else:
        data = pydantic_core.to_jsonable_python(message, bytes_mode="base64")
    return {k: v for k, v in data.items() if k not in ENVELOPE_FIELDS}


def _sized(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {key: _sized(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_sized(item) for item in value]
    return value


def render(message: Message) -> str:
    """How a message reads to a model: text as is, anything else as its type and JSON (bytes
    as their size)."""
    if isinstance(message, TextMessage):
        return message.content
    body = json.dumps(payload(message, shown=True), ensure_ascii=False, sort_keys=True)
    return f"{type(message).message_type}: {body}"


def digest(message: Message) -> str:
    """A short fingerprint of the type and payload, for loop detection."""
    body = json.dumps(payload(message), sort_keys=True, default=str)
    return hashlib.sha256(f"{type(message).message_type}|{body}".encode()).hexdigest()[:16]


def stamp(
    message: Message,
    *,
    sender: str,
    recipients: tuple[str, ...],
    parent_id: str | None,
) -> Message:
    """Validate `message` and give it a fresh envelope, as the runtime does on every send."""
    checked = validate(message)
    return dataclasses.replace(
        checked,
        sender=sender,
        recipients=recipients,
        id=new_id(),
        parent_id=parent_id,
        timestamp=time.time(),
    )
