"""The Store on PostgreSQL through the shared psycopg 3 pool.

A send is one statement: it checks membership and the idempotency key, increments the
chat's counter row (the row lock orders concurrent sends of a chat, and a rolled-back send
gives its number back), inserts the message and queues a NOTIFY, all in one transaction, so
a message and its announcement are committed together. Concurrent sends to one chat on a
replica share one transaction: their statements run in order, and commit (durably) together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from meshchat_chat.domain import (
    AccountChange,
    AddOutcome,
    AppliedChange,
    Change,
    ChangeKind,
    ChangeOutcome,
    ChangeResult,
    Chat,
    ChatCursor,
    Departure,
    DepartureReason,
    Entry,
    KeySet,
    Member,
    Message,
    NewChange,
    NewMessage,
    ReadState,
    Revocation,
    SendOutcome,
    SendResult,
    UserRef,
    apply_change,
)
from meshchat_runtime.database import PostgresDatabase, load_migrations
from meshchat_runtime.errors import NotFound
from meshchat_runtime.metrics import DatabaseMetrics
from meshchat_runtime.settings import DatabaseUrl

__all__ = ["MIGRATION_LOCK", "NOTIFY_CHANNEL", "PostgresStore"]

# The channel on which the store announces "<chat id>:<seq>" after a message is committed and
# "<chat id>:members" after a chat's membership changed or it was deleted (members added too:
# every replica caches chats with their members).
NOTIFY_CHANNEL = "meshchat_chat"
# The advisory lock under which replicas starting together apply the migrations one at a time.
MIGRATION_LOCK = "meshchat_chat.migrations"
# The advisory lock under which replicas apply account events one at a time.
ACCOUNT_EVENTS_LOCK = "meshchat_chat.account_events"
# The advisory lock, with the owner's id appended, under which one owner's chats are counted
# and created.
OWNER_LOCK = "meshchat_chat.owner"

_CHAT_COLUMNS = (
    "c.id::text AS id, c.name, c.owner_id, c.created_at, c.last_seq, "
    "ARRAY(SELECT m.user_id FROM chat_members m WHERE m.chat_id = c.id "
    'ORDER BY m.joined_at, m.username COLLATE "C") AS member_ids, '
    "ARRAY(SELECT m.username FROM chat_members m WHERE m.chat_id = c.id "
    'ORDER BY m.joined_at, m.username COLLATE "C") AS member_names, '
    "ARRAY(SELECT m.joined_at FROM chat_members m WHERE m.chat_id = c.id "
    'ORDER BY m.joined_at, m.username COLLATE "C") AS member_joined'
)
_MESSAGE_COLUMNS = (
    "chat_id::text AS chat_id, seq, sender_id, sender_username, text, client_message_id, "
    "created_at, edited_at, deleted_at"
)
# An entry of the log, joined with the message it is or that it changed.
_LOG = """
SELECT e.seq AS entry_seq, e.kind, e.sender_id AS actor_id, e.sender_username AS actor_username,
       e.created_at AS changed_at, m.chat_id::text AS chat_id, m.seq, m.sender_id,
       m.sender_username, m.text, m.client_message_id, m.created_at, m.edited_at, m.deleted_at
FROM messages e JOIN messages m ON m.chat_id = e.chat_id AND m.seq = coalesce(e.target_seq, e.seq)
WHERE e.chat_id = %s::uuid AND e.seq > %s ORDER BY e.seq LIMIT %s
"""
_READ_STATES = """
SELECT m.chat_id::text AS chat_id, m.read_seq,
    (SELECT count(*) FROM messages x WHERE x.chat_id = m.chat_id AND x.seq > m.read_seq
       AND x.kind = 'message' AND x.deleted_at IS NULL AND x.sender_id <> m.user_id) AS unread,
    (SELECT x.created_at FROM messages x WHERE x.chat_id = m.chat_id AND x.kind = 'message'
       ORDER BY x.seq DESC LIMIT 1) AS last_message_at
FROM chat_members m WHERE m.user_id = %s AND m.chat_id = ANY(%s::uuid[])
"""
_DEPARTURE_COLUMNS = "chat_id, user_id, chat_name, reason, by_username, departed_at"
_KEEP_DEPARTURE = (
    "ON CONFLICT (chat_id, user_id) DO UPDATE SET chat_name = excluded.chat_name, "
    "reason = excluded.reason, by_username = excluded.by_username, "
    "departed_at = excluded.departed_at"
)

_SEND = f"""
WITH existing AS (
    SELECT {_MESSAGE_COLUMNS} FROM messages
    WHERE %(client_id)s <> '' AND chat_id = %(chat)s::uuid AND sender_id = %(sender)s
      AND client_message_id = %(client_id)s
      -- The partial index's own condition, so that a prepared statement's generic plan
      -- uses the index instead of reading every message (it cannot infer it from the
      -- parameter's).
      AND client_message_id <> ''
), bumped AS (
    UPDATE chats SET last_seq = last_seq + 1
    WHERE id = %(chat)s::uuid
      AND NOT EXISTS (SELECT 1 FROM existing)
      AND EXISTS (
          SELECT 1 FROM chat_members WHERE chat_id = %(chat)s::uuid AND user_id = %(sender)s
      )
    RETURNING id, last_seq
), inserted AS (
    INSERT INTO messages
        (chat_id, seq, sender_id, sender_username, text, client_message_id, created_at)
    SELECT id, last_seq, %(sender)s, %(username)s, %(text)s, %(client_id)s, %(created)s
    FROM bumped
    RETURNING {_MESSAGE_COLUMNS}
), notified AS (
    SELECT pg_notify('{NOTIFY_CHANNEL}', chat_id || ':' || seq) FROM inserted
)
SELECT true AS created, inserted.* FROM inserted CROSS JOIN (SELECT count(*) FROM notified) n
UNION ALL
SELECT false AS created, existing.* FROM existing
"""  # noqa: S608


_Send = tuple[NewMessage, "asyncio.Future[SendResult]"]
# The most sends of one chat stored in one transaction.
SEND_GROUP_MAX = 64


def _send_params(message: NewMessage) -> dict[str, object]:
    return {
        "chat": message.chat_id,
        "sender": message.sender.user_id,
        "username": message.sender.username,
        "text": message.text,
        "client_id": message.client_message_id,
        "created": message.created_at,
    }


def _revocation(user_id: str, row: Mapping[str, Any]) -> Revocation:
    return Revocation(
        user_id=user_id,
        not_before=row["not_before"],
        kept_session_id=row["kept_session_id"],
        deleted=row["deleted"],
    )


def _chat(row: Mapping[str, Any]) -> Chat:
    return Chat(
        id=row["id"],
        name=row["name"],
        owner_id=row["owner_id"],
        created_at=row["created_at"],
        last_seq=row["last_seq"],
        members=tuple(
            Member(user_id, username, joined)
            for user_id, username, joined in zip(
                row["member_ids"], row["member_names"], row["member_joined"], strict=True
            )
        ),
    )


def _message(row: Mapping[str, Any]) -> Message:
    return Message(
        chat_id=row["chat_id"],
        seq=row["seq"],
        sender_id=row["sender_id"],
        sender_username=row["sender_username"],
        text=row["text"],
        client_message_id=row["client_message_id"],
        created_at=row["created_at"],
        edited_at=row["edited_at"],
        deleted_at=row["deleted_at"],
    )


def _entry(row: Mapping[str, Any]) -> Entry:
    message = _message(row)
    if row["kind"] == "message":
        return message
    return Change(
        chat_id=message.chat_id,
        seq=row["entry_seq"],
        kind=ChangeKind(row["kind"]),
        message=message,
        actor=UserRef(row["actor_id"], row["actor_username"]),
        changed_at=row["changed_at"],
    )


def _departure(row: Mapping[str, Any]) -> Departure:
    return Departure(
        chat_id=row["chat_id"],
        user_id=row["user_id"],
        chat_name=row["chat_name"],
        reason=DepartureReason(row["reason"]),
        by_username=row["by_username"],
        at=row["departed_at"],
    )


class PostgresStore:
    """Chats, members and messages in PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        # The sends waiting for each chat while a group of its sends is being stored.
        self._sends: dict[str, list[_Send]] = {}
        self._drains: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(
        cls, url: DatabaseUrl, *, pool_size: int = 10, metrics: DatabaseMetrics | None = None
    ) -> PostgresStore:
        """Open a pool of up to ``pool_size`` connections and migrate under the advisory lock."""
        db = PostgresDatabase(url, min_size=min(2, pool_size), max_size=pool_size, metrics=metrics)
        await db.open(load_migrations("meshchat_chat", "postgresql"), MIGRATION_LOCK)
        return cls(db)

    async def create_chat(self, chat: Chat, max_owned: int) -> bool:
        """Store a new chat with its members unless the owner has too many: an advisory lock
        on the owner orders their concurrent creations, so the count holds until the insert."""
        async with self._db.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"{OWNER_LOCK}:{chat.owner_id}",),
            )
            cur = await conn.execute(
                "SELECT count(*) AS owned FROM chats WHERE owner_id = %s", (chat.owner_id,)
            )
            row = await cur.fetchone()
            if row is not None and row["owned"] >= max_owned:
                return False
            await conn.execute(
                "INSERT INTO chats (id, name, owner_id, created_at, last_seq) "
                "VALUES (%s::uuid, %s, %s, %s, %s)",
                (chat.id, chat.name, chat.owner_id, chat.created_at, chat.last_seq),
            )
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO chat_members (chat_id, user_id, username, joined_at) "
                    "VALUES (%s::uuid, %s, %s, %s)",
                    [(chat.id, m.user_id, m.username, m.joined_at) for m in chat.members],
                )
            return True

    async def get_chat(self, chat_id: str) -> Chat | None:
        """The chat with its members, or None."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_CHAT_COLUMNS} FROM chats c WHERE c.id = %s::uuid",  # noqa: S608
                (chat_id,),
            )
            row = await cur.fetchone()
        return _chat(row) if row is not None else None

    async def list_chats(self, user_id: str, limit: int, after: ChatCursor | None) -> list[Chat]:
        """The member's chats, newest first, after the cursor."""
        query = (
            f"SELECT {_CHAT_COLUMNS} FROM chats c "  # noqa: S608
            "WHERE c.id IN (SELECT chat_id FROM chat_members WHERE user_id = %s)"
        )
        params: list[object] = [user_id]
        if after is not None:
            query += " AND (c.created_at, c.id) < (%s, %s::uuid)"
            params += [after.created_at, after.chat_id]
        query += " ORDER BY c.created_at DESC, c.id DESC LIMIT %s"
        params.append(limit)
        async with self._db.connection() as conn:
            cur = await conn.execute(query.encode(), params)
            rows = await cur.fetchall()
        return [_chat(row) for row in rows]

    async def delete_chat(self, chat_id: str, by_username: str, at: datetime) -> bool:
        """Delete the chat (members and messages cascade, departures stay) and announce it."""
        async with self._db.connection() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO departures ({_DEPARTURE_COLUMNS}) "  # noqa: S608
                "SELECT m.chat_id, m.user_id, c.name, 'chat_deleted', %s, %s "
                "FROM chat_members m JOIN chats c ON c.id = m.chat_id "
                f"WHERE m.chat_id = %s::uuid {_KEEP_DEPARTURE}",
                (by_username, at, chat_id),
            )
            cur = await conn.execute("DELETE FROM chats WHERE id = %s::uuid", (chat_id,))
            deleted = cur.rowcount > 0
            if deleted:
                await self._announce_members(conn, chat_id)
            return deleted

    async def add_member(self, chat_id: str, member: Member, max_members: int) -> AddOutcome:
        """Add a member unless already one or the chat is full, and announce it (replicas
        cache members). The chat's row is locked, so concurrent additions to it are counted
        one after the other. The count is a statement of its own, after the lock: its
        snapshot then includes what the previous holder of the lock committed (one
        statement would count with the snapshot of its start)."""
        async with self._db.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT 1 FROM chats WHERE id = %s::uuid FOR UPDATE", (chat_id,)
            )
            if await cur.fetchone() is None:
                raise NotFound(f"chat {chat_id} not found")
            cur = await conn.execute(
                "SELECT count(*) AS members, coalesce(bool_or(user_id = %s), false) AS present "
                "FROM chat_members WHERE chat_id = %s::uuid",
                (member.user_id, chat_id),
            )
            row = await cur.fetchone()
            assert row is not None
            if row["present"]:
                return AddOutcome.ALREADY_MEMBER
            if row["members"] >= max_members:
                return AddOutcome.CHAT_FULL
            await conn.execute(
                "INSERT INTO chat_members (chat_id, user_id, username, joined_at) "
                "VALUES (%s::uuid, %s, %s, %s)",
                (chat_id, member.user_id, member.username, member.joined_at),
            )
            await conn.execute(
                "DELETE FROM departures WHERE chat_id = %s::uuid AND user_id = %s",
                (chat_id, member.user_id),
            )
            await self._announce_members(conn, chat_id)
            return AddOutcome.ADDED

    async def remove_member(self, departure: Departure) -> bool:
        """Remove a member, keep the departure and announce it, so that their open streams
        end."""
        async with self._db.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "DELETE FROM chat_members WHERE chat_id = %s::uuid AND user_id = %s",
                (departure.chat_id, departure.user_id),
            )
            removed = cur.rowcount > 0
            if removed:
                await conn.execute(
                    f"INSERT INTO departures ({_DEPARTURE_COLUMNS}) "  # noqa: S608
                    f"VALUES (%s::uuid, %s, %s, %s, %s, %s) {_KEEP_DEPARTURE}",
                    (
                        departure.chat_id,
                        departure.user_id,
                        departure.chat_name,
                        departure.reason.value,
                        departure.by_username,
                        departure.at,
                    ),
                )
                await self._announce_members(conn, departure.chat_id)
            return removed

    async def departure(self, chat_id: str, user_id: str) -> Departure | None:
        """Why the user is no longer a member, when they were one."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                f"SELECT chat_id::text AS chat_id, {_DEPARTURE_COLUMNS.removeprefix('chat_id, ')} "  # noqa: S608
                "FROM departures WHERE chat_id = %s::uuid AND user_id = %s",
                (chat_id, user_id),
            )
            row = await cur.fetchone()
        return _departure(row) if row is not None else None

    @staticmethod
    async def _announce_members(conn: psycopg.AsyncConnection[Any], chat_id: str) -> None:
        await conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, f"{chat_id}:members"))

    async def send_message(self, message: NewMessage) -> SendResult:
        """Store the message with the chat's next seq, or return the first one of a retry.

        Concurrent sends to one chat are stored together: while a group of them is being
        committed, the next ones wait and then go in one transaction (one commit, one WAL
        flush) in the order they came, which is the order of their seqs."""
        future: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
        waiting = self._sends.get(message.chat_id)
        if waiting is None:
            waiting = self._sends[message.chat_id] = []
            drain = asyncio.create_task(self._drain(message.chat_id, waiting), name="sends")
            self._drains.add(drain)
            drain.add_done_callback(self._drains.discard)
        waiting.append((message, future))
        return await asyncio.shield(future)

    async def _drain(self, chat_id: str, waiting: list[_Send]) -> None:
        try:
            while waiting:
                group = waiting[:SEND_GROUP_MAX]
                del waiting[:SEND_GROUP_MAX]
                await self._send_group(group)
        finally:
            del self._sends[chat_id]

    async def _send_group(self, group: list[_Send]) -> None:
        messages = [message for message, _ in group]
        outcomes: list[SendResult | BaseException]
        try:
            if len(messages) == 1:
                outcomes = [await self._send_one(messages[0])]
            else:
                outcomes = list(await self._send_together(messages))
        except pg_errors.UniqueViolation:
            # A retry on another replica won a race; the group rolled back, seqs included.
            outcomes = [await self._outcome(m) for m in messages]
        except Exception as exc:
            outcomes = [exc] * len(messages)
        for (_, future), outcome in zip(group, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def _outcome(self, message: NewMessage) -> SendResult | BaseException:
        try:
            return await self._send_one(message)
        except Exception as exc:
            return exc

    async def _send_together(self, messages: list[NewMessage]) -> list[SendResult]:
        async with self._db.connection() as conn, conn.transaction():
            async with conn.pipeline():
                cursors = [await conn.execute(_SEND.encode(), _send_params(m)) for m in messages]
            results = []
            for message, cur in zip(messages, cursors, strict=True):
                row = await cur.fetchone()
                if row is None:
                    results.append(await self._refusal(conn, message))
                else:
                    created = SendOutcome.CREATED if row["created"] else SendOutcome.DUPLICATE
                    results.append(SendResult(created, _message(row)))
            return results

    async def _send_one(self, message: NewMessage) -> SendResult:
        async with self._db.connection() as conn:
            try:
                cur = await conn.execute(_SEND.encode(), _send_params(message))
                row = await cur.fetchone()
            except pg_errors.UniqueViolation:
                # A concurrent retry with the same client_message_id won the race; this
                # statement rolled back, counter included, so the first message stands.
                cur = await conn.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = %s::uuid "  # noqa: S608
                    "AND sender_id = %s AND client_message_id = %s",
                    (message.chat_id, message.sender.user_id, message.client_message_id),
                )
                first = await cur.fetchone()
                if first is None:
                    raise
                return SendResult(SendOutcome.DUPLICATE, _message(first))
            if row is not None:
                outcome = SendOutcome.CREATED if row["created"] else SendOutcome.DUPLICATE
                return SendResult(outcome, _message(row))
            return await self._refusal(conn, message)

    @staticmethod
    async def _refusal(conn: psycopg.AsyncConnection[Any], message: NewMessage) -> SendResult:
        """Why a send stored nothing: the sender is no member, or there is no chat."""
        cur = await conn.execute("SELECT 1 FROM chats WHERE id = %s::uuid", (message.chat_id,))
        exists = await cur.fetchone() is not None
        return SendResult(SendOutcome.NOT_MEMBER if exists else SendOutcome.NO_CHAT)

    async def change_message(self, change: NewChange) -> ChangeResult:
        """Edit or delete the message, the change taking the chat's next seq; the message's
        row lock orders concurrent changes of it, the chat's row lock orders the seqs."""
        async with self._db.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages "  # noqa: S608
                "WHERE chat_id = %s::uuid AND seq = %s AND kind = 'message' FOR UPDATE",
                (change.chat_id, change.message_seq),
            )
            row = await cur.fetchone()
            if row is None:
                return ChangeResult(ChangeOutcome.NO_MESSAGE)
            current = _message(row)
            updated = apply_change(current, change)
            if isinstance(updated, ChangeOutcome):
                return ChangeResult(updated, message=current)
            cur = await conn.execute(
                "UPDATE chats SET last_seq = last_seq + 1 WHERE id = %s::uuid RETURNING last_seq",
                (change.chat_id,),
            )
            bumped = await cur.fetchone()
            assert bumped is not None  # the message's row holds a reference to the chat
            seq = int(bumped["last_seq"])
            await conn.execute(
                "UPDATE messages SET text = %s, edited_at = %s, deleted_at = %s "
                "WHERE chat_id = %s::uuid AND seq = %s",
                (
                    updated.text,
                    updated.edited_at,
                    updated.deleted_at,
                    change.chat_id,
                    change.message_seq,
                ),
            )
            await conn.execute(
                "INSERT INTO messages (chat_id, seq, sender_id, sender_username, text, "
                "client_message_id, created_at, kind, target_seq) "
                "VALUES (%s::uuid, %s, %s, %s, '', '', %s, %s, %s)",
                (
                    change.chat_id,
                    seq,
                    change.actor.user_id,
                    change.actor.username,
                    change.changed_at,
                    change.kind.value,
                    change.message_seq,
                ),
            )
            await conn.execute(
                "SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, f"{change.chat_id}:{seq}")
            )
        stored = Change(change.chat_id, seq, change.kind, updated, change.actor, change.changed_at)
        return ChangeResult(ChangeOutcome.CHANGED, stored, updated)

    async def get_message(self, chat_id: str, seq: int) -> Message | None:
        """The message with this seq, or None."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages "  # noqa: S608
                "WHERE chat_id = %s::uuid AND seq = %s AND kind = 'message'",
                (chat_id, seq),
            )
            row = await cur.fetchone()
        return _message(row) if row is not None else None

    async def log_after(self, chat_id: str, after_seq: int, limit: int) -> list[Entry]:
        """Entries with seq > after_seq, ascending."""
        async with self._db.connection() as conn:
            cur = await conn.execute(_LOG.encode(), (chat_id, after_seq, limit))
            rows = await cur.fetchall()
        return [_entry(row) for row in rows]

    async def mark_read(self, chat_id: str, user_id: str, seq: int) -> int | None:
        """The larger of the read position and ``seq``, in one statement."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                "UPDATE chat_members SET read_seq = greatest(read_seq, %s) "
                "WHERE chat_id = %s::uuid AND user_id = %s RETURNING read_seq",
                (seq, chat_id, user_id),
            )
            row = await cur.fetchone()
        return int(row["read_seq"]) if row is not None else None

    async def read_states(self, user_id: str, chat_ids: Sequence[str]) -> dict[str, ReadState]:
        """The member's read state in each chat."""
        if not chat_ids:
            return {}
        async with self._db.connection() as conn:
            cur = await conn.execute(_READ_STATES.encode(), (user_id, list(chat_ids)))
            rows = await cur.fetchall()
        return {
            row["chat_id"]: ReadState(row["read_seq"], row["unread"], row["last_message_at"])
            for row in rows
        }

    async def messages_after(self, chat_id: str, after_seq: int, limit: int) -> list[Message]:
        """Messages with seq > after_seq, ascending."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = %s::uuid AND seq > %s "  # noqa: S608
                "AND kind = 'message' ORDER BY seq LIMIT %s",
                (chat_id, after_seq, limit),
            )
            rows = await cur.fetchall()
        return [_message(row) for row in rows]

    async def messages_before(
        self, chat_id: str, before_seq: int | None, limit: int
    ) -> list[Message]:
        """The newest messages with seq < before_seq, ascending."""
        bound = before_seq if before_seq is not None else 2**63 - 1
        async with self._db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = %s::uuid AND seq < %s "  # noqa: S608
                "AND kind = 'message' ORDER BY seq DESC LIMIT %s",
                (chat_id, bound, limit),
            )
            rows = await cur.fetchall()
        return [_message(row) for row in reversed(rows)]

    async def last_seq(self, chat_id: str) -> int | None:
        """The chat's counter, or None."""
        async with self._db.connection() as conn:
            cur = await conn.execute("SELECT last_seq FROM chats WHERE id = %s::uuid", (chat_id,))
            row = await cur.fetchone()
        return int(row["last_seq"]) if row is not None else None

    async def apply_account_change(self, change: AccountChange) -> AppliedChange:
        """Merge the revocation, remove a deleted user from every chat (handing each chat
        they owned to its earliest remaining member, or deleting it), and move the position,
        in one transaction."""
        new = change.revocation
        async with self._db.connection() as conn, conn.transaction():
            # One at a time across replicas: two deletions applied together would each pick
            # the other user, not yet gone, as the heir of a chat they share.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (ACCOUNT_EVENTS_LOCK,))
            cur = await conn.execute(
                "SELECT not_before, kept_session_id, deleted FROM revocations "
                "WHERE user_id = %s FOR UPDATE",
                (new.user_id,),
            )
            row = await cur.fetchone()
            merged = _revocation(new.user_id, row).merged(new) if row is not None else new
            await conn.execute(
                "INSERT INTO revocations (user_id, not_before, kept_session_id, deleted) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (user_id) DO UPDATE SET "
                "not_before = excluded.not_before, kept_session_id = excluded.kept_session_id, "
                "deleted = excluded.deleted",
                (merged.user_id, merged.not_before, merged.kept_session_id, merged.deleted),
            )
            await conn.execute(
                "INSERT INTO account_event_position (id, seq) VALUES (1, %s) "
                "ON CONFLICT (id) DO UPDATE SET "
                "seq = greatest(account_event_position.seq, excluded.seq)",
                (change.seq,),
            )
            if not new.deleted:
                return AppliedChange()
            cur = await conn.execute(
                "SELECT id::text AS id FROM chats WHERE owner_id = %s ORDER BY id FOR UPDATE",
                (new.user_id,),
            )
            owned = [r["id"] for r in await cur.fetchall()]
            cur = await conn.execute(
                "DELETE FROM chat_members WHERE user_id = %s RETURNING chat_id::text AS id",
                (new.user_id,),
            )
            member_of = [r["id"] for r in await cur.fetchall()]
            deleted = []
            for chat_id in owned:
                cur = await conn.execute(
                    "UPDATE chats SET owner_id = heir.user_id FROM (SELECT user_id "
                    "FROM chat_members WHERE chat_id = %s::uuid "
                    'ORDER BY joined_at, username COLLATE "C" LIMIT 1) heir '
                    "WHERE chats.id = %s::uuid",
                    (chat_id, chat_id),
                )
                if cur.rowcount == 0:
                    await conn.execute("DELETE FROM chats WHERE id = %s::uuid", (chat_id,))
                    deleted.append(chat_id)
            changed = sorted(set(member_of + owned))
            for chat_id in changed:
                await self._announce_members(conn, chat_id)
        return AppliedChange(tuple(c for c in changed if c not in deleted), tuple(deleted))

    async def revocations(self) -> list[Revocation]:
        """Every user's revocation."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                "SELECT user_id, not_before, kept_session_id, deleted FROM revocations"
            )
            return [_revocation(row["user_id"], row) for row in await cur.fetchall()]

    async def account_event_position(self) -> int:
        """The number of the last account event applied; 0 before the first."""
        async with self._db.connection() as conn:
            cur = await conn.execute("SELECT seq FROM account_event_position WHERE id = 1")
            row = await cur.fetchone()
        return int(row["seq"]) if row is not None else 0

    async def save_key_set(self, key_set: KeySet) -> None:
        """Keep the key set unless a later one is kept."""
        async with self._db.connection() as conn:
            await conn.execute(
                "INSERT INTO jwks (id, keys, fetched_at) VALUES (1, %s, %s) ON CONFLICT (id) DO "
                "UPDATE SET keys = excluded.keys, fetched_at = excluded.fetched_at "
                "WHERE excluded.fetched_at >= jwks.fetched_at",
                (key_set.keys, key_set.fetched_at),
            )

    async def load_key_set(self) -> KeySet | None:
        """The key set kept last."""
        async with self._db.connection() as conn:
            cur = await conn.execute("SELECT keys, fetched_at FROM jwks WHERE id = 1")
            row = await cur.fetchone()
        return KeySet(row["keys"], row["fetched_at"]) if row is not None else None

    async def ping(self) -> bool:
        """Whether a pooled connection answers."""
        return await self._db.ping()

    async def close(self) -> None:
        """Close the pool."""
        await self._db.close()
