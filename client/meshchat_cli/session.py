"""``meshchat connect``: the recent history, then live messages, while typed lines are sent.

Three threads share the work. The main thread reads what the user types (so that Ctrl-C
reaches it), runs the slash commands of :mod:`meshchat_cli.slash` and queues each line to
send. A receiver thread follows the chat's Connect stream and reopens it after any drop
with the last seq it showed, so that nothing is missed; it drops every message at or below
that seq, so that nothing is shown twice. A sender thread sends the queued lines in order,
each with its own client_message_id, retrying until the server has stored it: a retry after
a lost answer is stored once. Both tell the status line how things stand.

A failure that ends the session (the chat was deleted, the user was removed, the login
ended) is recorded by the thread that met it, which then interrupts the main thread.
"""

from __future__ import annotations

import contextlib
import queue
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import grpc

from meshchat.chat.v1 import chat_pb2
from meshchat_cli import slash
from meshchat_cli.api import MEMBERS_ONLY, Api, ConnectCall
from meshchat_cli.errors import CliError
from meshchat_cli.failures import TRANSIENT, rpc_failure
from meshchat_cli.screen import Connection, Screen, Status

__all__ = ["Backoff", "ConnectSession"]

# After the end of input, how long to wait for the user's own last messages to come back.
_ECHO_WAIT = 10.0
_JOIN_TIMEOUT = 2.0
# Refusals of /edit and /delete that leave the chat going.
_REFUSALS = (
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
)
# After this many failed tries in a row the chat counts as offline (the tries go on).
_OFFLINE_AFTER = 8
# The read position is sent to the server at most this often while messages arrive, and
# once more when the session ends.
_MARK_READ_EVERY = 2.0

Entry = chat_pb2.Message | chat_pb2.MessageChange


def _entries(event: chat_pb2.ConnectResponse) -> list[Entry]:
    """The messages and changes of an event in seq order (a batch holds both kinds)."""
    kind = event.WhichOneof("event")
    if kind == "message":
        return [event.message]
    if kind == "change":
        return [event.change]
    if kind == "batch":
        return sorted([*event.batch.messages, *event.batch.changes], key=lambda e: e.seq)
    return []


class _ReadMarker:
    """Moves the user's read position as entries are shown: at most every
    :data:`_MARK_READ_EVERY` seconds, and at the end. A failure to mark is not worth ending
    the session for: the next mark, or the stream, tells."""

    def __init__(self, api: Api, chat_id: str) -> None:
        self._api = api
        self._chat_id = chat_id
        self._shown = 0
        self._marked = 0
        self._marked_at = 0.0

    def shown(self, seq: int) -> None:
        """Entry ``seq`` has been shown."""
        self._shown = max(self._shown, seq)
        if time.monotonic() - self._marked_at >= _MARK_READ_EVERY:
            self.flush()

    def flush(self) -> None:
        """Send the read position, unless the server has it."""
        if self._shown <= self._marked:
            return
        self._marked_at = time.monotonic()
        with contextlib.suppress(CliError):
            self._marked = self._api.mark_read(self._chat_id, self._shown).read_seq


@dataclass
class Backoff:
    """Exponential delays with jitter between reconnection attempts."""

    initial: float = 0.2
    maximum: float = 5.0
    _next: float = field(default=0.0, init=False)

    def delay(self) -> float:
        """The next delay, in seconds."""
        self._next = min(self.maximum, self._next * 2) if self._next else self.initial
        # Jitter spreads the reconnections of many clients after a server restart; it need
        # not be unpredictable.
        return self._next * random.uniform(0.5, 1.0)  # noqa: S311

    def reset(self) -> None:
        """Start again from the initial delay."""
        self._next = 0.0


class _StatusBoard:
    """The status line's state, put together from the receiver's and the sender's news."""

    def __init__(self, screen: Screen) -> None:
        self._screen = screen
        self._lock = threading.Lock()
        self._status = Status()

    def _publish(self, change: Callable[[Status], Status]) -> None:
        with self._lock:
            self._status = status = change(self._status)
        self._screen.status(status)

    def live(self) -> None:
        """The stream is open and caught up."""
        self._publish(lambda status: Status(Connection.LIVE, unsent=status.unsent))

    def retrying(self, reason: str, attempt: int, delay: float) -> None:
        """The ``attempt``-th try in a row failed because of ``reason``; the next one is in
        ``delay`` seconds."""
        connection = Connection.OFFLINE if attempt >= _OFFLINE_AFTER else Connection.RECONNECTING
        self._publish(
            lambda status: Status(
                connection,
                reason,
                attempt,
                retry_at=time.monotonic() + delay,
                since=status.since or time.time(),
                unsent=status.unsent,
            )
        )

    def unsent(self, count: int) -> None:
        """``count`` typed lines are not stored yet."""
        self._publish(lambda status: replace(status, unsent=count))


class _Failure:
    """The first failure that ends the session; it interrupts the main thread, which is
    waiting for input or for the last sends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._main = threading.main_thread().ident
        self._closed = False
        self.error: CliError | None = None

    def report(self, error: CliError) -> None:
        with self._lock:
            if self.error is not None:
                return
            self.error = error
            if self._closed or self._main is None:
                return
        signal.pthread_kill(self._main, signal.SIGINT)

    def close(self) -> None:
        """The main thread is leaving: record failures from now on, interrupt no more."""
        with self._lock:
            self._closed = True


class _Receiver:
    """Follows the chat after ``after_seq``, reconnecting until stopped."""

    def __init__(
        self,
        api: Api,
        chat_id: str,
        after_seq: int,
        screen: Screen,
        board: _StatusBoard,
        failure: _Failure,
        reads: _ReadMarker,
    ) -> None:
        self._api = api
        self._chat_id = chat_id
        self._screen = screen
        self._board = board
        self._failure = failure
        self._reads = reads
        self._stopped = threading.Event()
        self._shown = threading.Condition()
        self._last_seq = after_seq
        self._call: ConnectCall | None = None
        self._backoff = Backoff()
        self._failed_tries = 0
        self._refreshed = False
        self._thread = threading.Thread(target=self._run, name="meshchat-receiver", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._shown:
            call = self._call
        if call is not None:
            call.cancel()
        self._thread.join(timeout=_JOIN_TIMEOUT)

    def wait_shown(self, seq: int, timeout: float) -> None:
        """Wait until the message ``seq`` has been shown."""
        with self._shown:
            self._shown.wait_for(lambda: self._last_seq >= seq, timeout=timeout)

    def _show(self, entry: Entry) -> None:
        with self._shown:
            if entry.seq <= self._last_seq:
                return
            self._last_seq = entry.seq
            self._shown.notify_all()
        if isinstance(entry, chat_pb2.MessageChange):
            self._show_change(entry)
        else:
            self._screen.show(entry)
        self._reads.shown(entry.seq)

    def _show_change(self, change: chat_pb2.MessageChange) -> None:
        """A line can no longer be changed where it was printed: the change is told, and an
        edited message shown again."""
        who, seq = change.actor_username, change.message.seq
        if change.kind == chat_pb2.MessageChange.KIND_DELETED:
            self._screen.notice(
                f"{who} deleted message #{seq} ({change.message.sender_username}'s)"
            )
            return
        self._screen.notice(f"{who} edited message #{seq}:")
        self._screen.show(change.message)

    def _caught_up(self) -> None:
        if self._failed_tries:
            self._screen.notice("reconnected", style="green")
        self._failed_tries = 0
        self._backoff.reset()
        self._refreshed = False
        self._board.live()

    def _follow(self, token: str) -> str:
        """Show the stream's messages until it ends; why it ended."""
        with self._shown:
            call = self._call = self._api.connect(self._chat_id, self._last_seq, token)
        if self._stopped.is_set():
            call.cancel()
        for event in call:
            kind = event.WhichOneof("event")
            if kind == "caught_up":
                self._caught_up()
                continue
            # A batch is its entries one after the other; a heartbeat has none.
            for entry in _entries(event):
                if entry.seq > self._last_seq + 1:
                    # Never skip one: reopen after the last entry shown, and the server
                    # replays what is missing.
                    call.cancel()
                    return f"message {self._last_seq + 1} was missing"
                self._show(entry)
        return "the server ended the stream"

    def _attempt(self) -> str | None:
        """Follow one stream until it ends; why it ended, or None to reopen it at once."""
        token = self._api.tokens.access_token()
        try:
            return self._follow(token)
        except grpc.RpcError as error:
            code = error.code()
            if self._stopped.is_set() or code is grpc.StatusCode.DEADLINE_EXCEEDED:
                return None  # stopping, or the stream's own deadline passed
            if code is grpc.StatusCode.UNAUTHENTICATED and not self._refreshed:
                # The token expired under the stream: a new one, and straight back.
                self._refreshed = True
                self._api.tokens.refresh(token)
                return None
            if code not in TRANSIENT:
                raise rpc_failure(
                    error,
                    self._api.endpoints.chat,
                    "follow the chat",
                    MEMBERS_ONLY,
                    self._api.tokens.username,
                ) from None
            return code.name.lower().replace("_", " ")

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                reason = self._attempt()
            except CliError as error:
                if error.status not in TRANSIENT:
                    self._failure.report(error)
                    return
                reason = error.message
            if reason is None:
                continue
            if not self._failed_tries:
                self._screen.notice(f"connection lost ({reason}); reconnecting…", style="yellow")
            self._failed_tries += 1
            delay = self._backoff.delay()
            self._board.retrying(reason, self._failed_tries, delay)
            self._stopped.wait(delay)


class _Sender:
    """Sends queued lines in order; transient failures are retried with the same id."""

    def __init__(
        self, api: Api, chat_id: str, screen: Screen, board: _StatusBoard, failure: _Failure
    ) -> None:
        self._api = api
        self._chat_id = chat_id
        self._screen = screen
        self._board = board
        self._failure = failure
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stopped = threading.Event()
        self.last_seq = 0
        self._thread = threading.Thread(target=self._run, name="meshchat-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, text: str) -> None:
        self._lines.put(text)
        self._board.unsent(self.pending())

    def wait_idle(self) -> None:
        """Wait until every submitted line has been stored or rejected."""
        self._lines.join()

    def pending(self) -> int:
        """Lines not yet stored."""
        return self._lines.unfinished_tasks

    def stop(self) -> None:
        self._stopped.set()
        self._lines.put(None)
        self._thread.join(timeout=_JOIN_TIMEOUT)

    def _send(self, text: str) -> None:
        client_message_id = uuid.uuid4().hex
        backoff = Backoff()
        warned = False
        while not self._stopped.is_set():
            try:
                message = self._api.send_message(self._chat_id, text, client_message_id)
            except CliError as error:
                if error.status is grpc.StatusCode.INVALID_ARGUMENT:
                    self._screen.notice(f"not sent: {error.message}", style="red")
                    return
                if error.status not in TRANSIENT:
                    self._failure.report(error)
                    self._stopped.set()
                    return
                if not warned:
                    warned = True
                    self._screen.notice(f"not sent yet, retrying: {error.message}", "yellow")
                self._stopped.wait(backoff.delay())
                continue
            self.last_seq = max(self.last_seq, message.seq)
            return

    def _run(self) -> None:
        while (text := self._lines.get()) is not None:
            try:
                self._send(text)
            finally:
                self._lines.task_done()
                self._board.unsent(self.pending())


class ConnectSession:
    """One ``meshchat connect``: run it with :meth:`run`."""

    def __init__(self, api: Api, chat: chat_pb2.Chat, history: int, screen: Screen) -> None:
        self._api = api
        self._chat = chat
        self._history = history
        self._screen = screen

    def _greet(self, user: str) -> None:
        members = ", ".join(member.username for member in self._chat.members)
        self._screen.notice(
            f"connected to {self._chat.name} as {user} · members: {members} · "
            "/help lists the commands, Ctrl-D leaves"
        )

    def _show_history(
        self, messages: list[chat_pb2.Message], live: bool, read_seq: int = 0
    ) -> None:
        """Show ``messages`` between marks; ``live``: the live messages follow. Where the
        user left off (``read_seq``; 0: never read) is marked."""
        if not messages:
            self._screen.notice("no earlier messages" + (" · live from here" if live else ""))
            return
        self._screen.notice(f"── {len(messages)} earlier message(s) ──")
        left_off = read_seq > 0
        for message in messages:
            if left_off and message.seq > read_seq:
                self._screen.notice("── new since you left ──", style="yellow")
                left_off = False
            self._screen.show(message)
        self._screen.notice("── live from here ──" if live else "── end of history ──")

    def _who(self) -> None:
        chat = self._api.get_chat(self._chat.id)
        owner = chat.owner_id
        members = ", ".join(
            f"{member.username} (owner)" if member.user_id == owner else member.username
            for member in chat.members
        )
        self._screen.notice(f"{len(chat.members)} member(s) of {chat.name}: {members}")

    def _command(self, typed: slash.Typed, sender: _Sender) -> bool:
        """Do what a typed line asks; False to leave."""
        match typed:
            case slash.Send(text):
                sender.submit(text)
            case slash.Quit():
                return False
            case slash.Help():
                self._screen.notice(slash.HELP)
            case slash.Who():
                self._who()
            case slash.History(count):
                self._show_history(self._api.recent_messages(self._chat.id, count), live=False)
            case slash.Edit(seq, text):
                self._change(lambda: self._api.edit_message(self._chat.id, seq, text))
            case slash.Delete(seq):
                self._change(lambda: self._api.delete_message(self._chat.id, seq))
            case slash.Invalid(problem):
                self._screen.notice(problem, style="red")
            case slash.Nothing():
                pass
        return True

    def _change(self, call: Callable[[], chat_pb2.Message]) -> None:
        """Edit or delete; the stream shows the change. A refusal (not your message, no
        such message) is told, and the chat goes on."""
        try:
            call()
        except CliError as error:
            if error.status in TRANSIENT or error.status in _REFUSALS:
                self._screen.notice(error.message, style="red")
                return
            raise

    def _read_and_send(self, sender: _Sender) -> None:
        while (line := self._screen.read_line()) is not None:
            try:
                if not self._command(slash.parse(line), sender):
                    return
            except CliError as error:
                # A command that asked the server (/who, /history) failed; the chat goes on.
                if error.status not in TRANSIENT:
                    raise
                self._screen.notice(error.message, style="red")

    def run(self) -> None:
        """Show the history, follow the chat and send typed lines until the end of input,
        /quit or Ctrl-C; raise the failure that ended the session early, if any."""
        user = self._api.tokens.credentials().username
        if self._history:
            recent = self._api.recent_messages(self._chat.id, self._history)
            after_seq = recent[-1].seq if recent else 0
        else:
            recent, after_seq = [], self._chat.last_seq
        failure = _Failure()
        board = _StatusBoard(self._screen)
        reads = _ReadMarker(self._api, self._chat.id)
        receiver = _Receiver(
            self._api, self._chat.id, after_seq, self._screen, board, failure, reads
        )
        sender = _Sender(self._api, self._chat.id, self._screen, board, failure)
        self._greet(user)
        if self._history:
            self._show_history(recent, live=True, read_seq=self._chat.read_seq)
            if recent:
                reads.shown(recent[-1].seq)
        receiver.start()
        sender.start()
        try:
            self._read_and_send(sender)
            sender.wait_idle()
            receiver.wait_shown(sender.last_seq, timeout=_ECHO_WAIT)
        except KeyboardInterrupt:
            if failure.error is None and sender.pending():
                self._screen.notice(f"left with {sender.pending()} message(s) not sent")
        finally:
            failure.close()
            sender.stop()
            receiver.stop()
            if failure.error is None:
                reads.flush()
        if failure.error is not None:
            raise failure.error
