"""Memory that outlives a session: per-agent key/value pairs and conversation history, in SQLite.

`Memory("state.db")` keeps everything in that file, so the next runtime opened on the same path
finds it; `Memory(":memory:")` (the default) lasts as long as the object, for tests. Values are
stored as JSON. Each runtime writes under its own session id; reads see every session.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Literal

from .errors import StateError
from .messages import Message, from_dict, new_id, to_dict

Role = Literal["received", "sent"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    agent TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (agent, key)
);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    agent TEXT NOT NULL, message_id TEXT NOT NULL, session TEXT NOT NULL,
    role TEXT NOT NULL, message TEXT NOT NULL, ts REAL NOT NULL,
    UNIQUE (agent, message_id, role)
);
CREATE INDEX IF NOT EXISTS history_by_agent ON history (agent, seq);
"""


class Memory:
    """An SQLite store shared by a runtime's agents, each of which sees only its own rows."""

    def __init__(self, path: str | Path = ":memory:", *, session: str | None = None) -> None:
        self.path = str(path)
        self.session = session or new_id()
        # The runtime drives agents from one event loop, but a tool may run in a worker
        # thread; sqlite3 serialises access on one connection itself.
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the memory store {self.path!r}: {exc}") from None

    def for_agent(self, agent: str) -> AgentMemory:
        return AgentMemory(self, agent)

    def set(self, agent: str, key: str, value: Any) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO kv (agent, key, value, updated) VALUES (?, ?, ?, ?)",
                (agent, key, json.dumps(value), time.time()),
            )

    def get(self, agent: str, key: str, default: Any = None) -> Any:
        row = self._db.execute(
            "SELECT value FROM kv WHERE agent = ? AND key = ?", (agent, key)
        ).fetchone()
        return default if row is None else json.loads(row[0])

    def delete(self, agent: str, key: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM kv WHERE agent = ? AND key = ?", (agent, key))

    def keys(self, agent: str) -> list[str]:
        rows = self._db.execute("SELECT key FROM kv WHERE agent = ? ORDER BY key", (agent,))
        return [r[0] for r in rows]

    def record(self, agent: str, role: Role, message: Message) -> None:
        """Add a message to an agent's history; recording the same message twice is a no-op."""
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO history (agent, message_id, session, role, message, ts)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (agent, message.id, self.session, role, json.dumps(to_dict(message)), time.time()),
            )

    def history(self, agent: str, limit: int | None = None) -> list[tuple[Role, Message]]:
        """The agent's messages across all sessions, oldest first (the last `limit` of them)."""
        rows = self._db.execute(
            "SELECT role, message FROM history WHERE agent = ? ORDER BY seq DESC LIMIT ?",
            (agent, -1 if limit is None else limit),
        ).fetchall()
        return [(role, _load(text)) for role, text in reversed(rows)]

    def dump(self) -> dict[str, Any]:
        """Everything in the store, JSON-ready, for `Runtime.save_state`."""
        kv = self._db.execute("SELECT agent, key, value, updated FROM kv ORDER BY agent, key")
        hist = self._db.execute(
            "SELECT agent, message_id, session, role, message, ts FROM history ORDER BY seq"
        )
        return {"kv": [list(r) for r in kv], "history": [list(r) for r in hist]}

    def restore(self, data: dict[str, Any]) -> None:
        """Merge a `dump()` back in; rows already present are kept as they are."""
        try:
            with self._db:
                self._db.executemany(
                    "INSERT OR IGNORE INTO kv (agent, key, value, updated) VALUES (?, ?, ?, ?)",
                    [tuple(r) for r in data.get("kv", [])],
                )
                self._db.executemany(
                    "INSERT OR IGNORE INTO history"
                    " (agent, message_id, session, role, message, ts) VALUES (?, ?, ?, ?, ?, ?)",
                    [tuple(r) for r in data.get("history", [])],
                )
        except (sqlite3.Error, TypeError) as exc:
            raise StateError(f"memory snapshot cannot be restored: {exc}") from None

    def close(self) -> None:
        self._db.close()


def _load(text: str) -> Message:
    return from_dict(json.loads(text))


class AgentMemory:
    """One agent's view of a `Memory`: its own keys and its own history, nothing else."""

    def __init__(self, memory: Memory, agent: str) -> None:
        self._memory = memory
        self.agent = agent

    def set(self, key: str, value: Any) -> None:
        self._memory.set(self.agent, key, value)

    def get(self, key: str, default: Any = None) -> Any:
        return self._memory.get(self.agent, key, default)

    def delete(self, key: str) -> None:
        self._memory.delete(self.agent, key)

    def keys(self) -> list[str]:
        return self._memory.keys(self.agent)

    def history(self, limit: int | None = None) -> list[tuple[Role, Message]]:
        return self._memory.history(self.agent, limit)
