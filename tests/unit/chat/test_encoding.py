"""Connect's pre-encoded responses are the protobuf encoding of the same events."""

from __future__ import annotations

import uuid

from meshchat.chat.v1 import chat_pb2
from meshchat_chat.domain import CaughtUp, Heartbeat, Message, MessageBatch
from meshchat_chat.servicer import StreamEncoder, message_to_proto
from meshchat_runtime.timestamps import utc_now

CHAT = str(uuid.uuid4())


def message(seq: int, text: str) -> Message:
    return Message(CHAT, seq, "user-1", "alice", text, f"c-{seq}", utc_now())


def test_messages_batches_and_markers_encode_as_their_protos() -> None:
    encoder = StreamEncoder()
    # Long texts make lengths of several varint bytes.
    messages = tuple(message(seq, "\U0001f600" * (seq * 500)) for seq in range(1, 6))
    single = chat_pb2.ConnectResponse.FromString(encoder.encode(MessageBatch(messages[:1])))
    assert single == chat_pb2.ConnectResponse(message=message_to_proto(messages[0]))
    batch = chat_pb2.ConnectResponse.FromString(encoder.encode(MessageBatch(messages)))
    expected = chat_pb2.MessageBatch(messages=[message_to_proto(m) for m in messages])
    assert batch == chat_pb2.ConnectResponse(batch=expected)
    assert chat_pb2.ConnectResponse.FromString(encoder.encode(CaughtUp(7))) == (
        chat_pb2.ConnectResponse(caught_up=chat_pb2.CaughtUp(last_seq=7))
    )
    assert chat_pb2.ConnectResponse.FromString(encoder.encode(Heartbeat())).HasField("heartbeat")


def test_the_bytes_of_a_message_or_batch_are_built_once() -> None:
    encoder = StreamEncoder(cache_size=8)
    batch = MessageBatch((message(1, "a"), message(2, "b")))
    assert encoder.encode(batch) is encoder.encode(MessageBatch(batch.messages))
    single = MessageBatch((message(3, "c"),))
    assert encoder.encode(single) is encoder.encode(single)
