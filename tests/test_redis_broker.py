"""The Redis broker transport takes a burst of messages per round trip (config/redis_broker.py)
and keeps kombu's records: every message it hands out is in the unacked set, acks and
rejects clear them, and the visibility-timeout restore and a closing consumer put unacked
messages back, identical. Real Redis, real kombu consumers; no worker."""

from __future__ import annotations

import json

import pytest
from kombu import Connection, Consumer, Exchange, Queue

BROKER = "redis://127.0.0.1:6379/6"  # a database of its own
TRANSPORT = "config.redis_broker:Transport"
QUEUE = Queue("jobs", Exchange("jobs", type="direct"), routing_key="jobs")


@pytest.fixture
def redis_db():
    import redis

    client = redis.Redis.from_url(BROKER, socket_connect_timeout=1)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {BROKER}")
    yield client
    client.flushdb()
    client.close()


def _connection(transport: str = TRANSPORT, **options) -> Connection:
    return Connection(BROKER, transport=transport, transport_options=options)


def _publish(count: int, start: int = 0) -> None:
    with _connection() as conn, conn.Producer() as producer:
        for n in range(start, start + count):
            producer.publish({"n": n}, exchange=QUEUE.exchange, routing_key="jobs", declare=[QUEUE])


def _take(conn: Connection, prefetch: int, received: list) -> Consumer:
    consumer = Consumer(conn, [QUEUE], callbacks=[lambda body, message: received.append((body, message))],
                        prefetch_count=prefetch)
    consumer.consume()
    return consumer


def _unacked(redis_db) -> dict[str, list]:
    return {key.decode(): json.loads(value) for key, value in redis_db.hgetall("unacked").items()}


def test_one_wait_takes_the_burst_behind_it_in_order_each_recorded_as_unacked(redis_db):
    _publish(20)
    received: list = []
    with _connection() as conn:
        _take(conn, 50, received)
        conn.drain_events(timeout=2)  # kombu's own transport hands out one message here
        assert [body["n"] for body, _ in received] == list(range(20))
        assert redis_db.llen("jobs") == 0
        records = _unacked(redis_db)
        assert set(records) == {message.delivery_tag for _, message in received}
        assert redis_db.zcard("unacked_index") == 20
        for _, message in received:
            payload, exchange, routing_key = records[message.delivery_tag]
            assert payload == message._raw  # the message as it was published, as kombu records it
            assert (exchange, routing_key) == ("jobs", "jobs")
        for _, message in received:
            message.ack()
        assert redis_db.hlen("unacked") == 0 and redis_db.zcard("unacked_index") == 0


def test_a_batch_takes_no_more_than_prefetch_allows(redis_db):
    _publish(12)
    received: list = []
    with _connection() as conn:
        _take(conn, 5, received)
        conn.drain_events(timeout=2)
        assert [body["n"] for body, _ in received] == [0, 1, 2, 3, 4]
        assert redis_db.llen("jobs") == 7 and redis_db.hlen("unacked") == 5
        for _, message in received:
            message.ack()
        conn.drain_events(timeout=2)
        assert [body["n"] for body, _ in received] == list(range(10))  # room for five more
        for _, message in received[5:]:
            message.ack()
        conn.drain_events(timeout=2)
        assert [body["n"] for body, _ in received] == list(range(12))
        for _, message in received[10:]:
            message.ack()
        assert redis_db.hlen("unacked") == 0


def test_its_records_are_the_ones_kombu_writes(redis_db):
    """The same message taken by kombu's transport and by ours leaves the same record shape."""
    _publish(1)
    theirs: list = []
    with _connection("redis") as conn:
        _take(conn, 10, theirs)
        conn.drain_events(timeout=2)
        (_, their_message), = theirs
        their_record = _unacked(redis_db)[their_message.delivery_tag]
        their_message.ack()
    _publish(3, start=1)
    ours: list = []
    with _connection() as conn:
        _take(conn, 10, ours)
        conn.drain_events(timeout=2)
        assert len(ours) == 3
        for _, message in ours:
            record = _unacked(redis_db)[message.delivery_tag]
            assert [type(part) for part in record] == [type(part) for part in their_record]
            assert record[1:] == their_record[1:]
            assert record[0].keys() == their_record[0].keys()
            message.ack()


def test_messages_never_acknowledged_come_back_after_the_visibility_timeout(redis_db):
    """A worker killed holding a batch: its records bring every message back, unchanged."""
    _publish(6)
    received: list = []
    with _connection() as conn:
        _take(conn, 50, received)
        conn.drain_events(timeout=2)
        assert len(received) == 6 and redis_db.llen("jobs") == 0
        tags = {message.delivery_tag for _, message in received}
        conn.default_channel.qos.restore_at_shutdown = False  # it dies: nothing acknowledged or put back

    with _connection(visibility_timeout=0) as other:
        other.default_channel.qos.restore_visible(num=100)
        assert redis_db.llen("jobs") == 6 and redis_db.hlen("unacked") == 0
        again: list = []
        _take(other, 50, again)
        other.drain_events(timeout=2)
        assert sorted(body["n"] for body, _ in again) == list(range(6))
        assert {message.delivery_tag for _, message in again} == tags
        for _, message in again:
            message.ack()


def test_a_consumer_that_closes_puts_its_unacknowledged_messages_back(redis_db):
    _publish(4)
    received: list = []
    with _connection() as conn:
        _take(conn, 50, received)
        conn.drain_events(timeout=2)
        received[0][1].ack()
        received[1][1].reject(requeue=True)
        assert redis_db.llen("jobs") == 1
    # Closing restored the two neither acknowledged nor rejected.
    assert redis_db.llen("jobs") == 3 and redis_db.hlen("unacked") == 0
    again: list = []
    with _connection() as conn:
        _take(conn, 50, again)
        conn.drain_events(timeout=2)
        assert sorted(body["n"] for body, _ in again) == [1, 2, 3]
        for _, message in again:
            message.ack()


def test_with_a_key_prefix_it_takes_messages_as_kombu_does(redis_db):
    with _connection(global_keyprefix="pre:") as conn, conn.Producer() as producer:
        for n in range(3):
            producer.publish({"n": n}, exchange=QUEUE.exchange, routing_key="jobs", declare=[QUEUE])
    received: list = []
    with _connection(global_keyprefix="pre:") as conn:
        _take(conn, 50, received)
        conn.drain_events(timeout=2)
        assert [body["n"] for body, _ in received] == [0]  # one message per BRPOP
        assert redis_db.llen("pre:jobs") == 2 and redis_db.hlen("pre:unacked") == 1
        while len(received) < 3:
            conn.drain_events(timeout=2)
        for _, message in received:
            message.ack()
        assert redis_db.hlen("pre:unacked") == 0


def test_a_delivery_that_raises_puts_the_rest_of_the_batch_back_at_once_in_order(redis_db):
    _publish(10)
    received: list = []

    def take(body, message):
        received.append((body, message))
        if body["n"] == 2:
            raise RuntimeError("the consumer's callback failed")

    with _connection() as conn:
        Consumer(conn, [QUEUE], callbacks=[take], prefetch_count=50).consume()
        with pytest.raises(RuntimeError):
            conn.drain_events(timeout=2)
        assert [body["n"] for body, _ in received] == [0, 1, 2]
        assert redis_db.llen("jobs") == 7, "the seven not handed out are queued again, not hidden"
        assert set(_unacked(redis_db)) == {message.delivery_tag for _, message in received}
        for _, message in received:
            message.ack()
    # The first consumer is gone; what is next in the queue is what was next in the batch.
    again: list = []
    with _connection() as conn:
        _take(conn, 50, again)
        conn.drain_events(timeout=2)
        assert [body["n"] for body, _ in again] == list(range(3, 10))
        for _, message in again:
            message.ack()


def test_a_queue_consumed_without_acknowledgement_leaves_no_records(redis_db):
    _publish(3)
    received: list = []
    with _connection() as conn:
        Consumer(conn, [QUEUE], callbacks=[lambda body, message: received.append(body)], no_ack=True).consume()
        while len(received) < 3:
            conn.drain_events(timeout=2)
    assert [body["n"] for body in received] == [0, 1, 2]
    assert redis_db.hlen("unacked") == 0 and redis_db.zcard("unacked_index") == 0


def test_with_prefetch_disabled_it_takes_one_message_for_each_free_slot(redis_db):
    """Celery's `worker_disable_prefetch` replaces the channel's `can_consume`."""
    _publish(3)
    received: list = []
    with _connection() as conn:
        _take(conn, 50, received)
        qos = conn.default_channel.qos
        qos.can_consume = lambda: len(qos._delivered) - len(qos._dirty) < 1
        conn.drain_events(timeout=2)
        assert len(received) == 1 and redis_db.llen("jobs") == 2
        received[0][1].ack()
        conn.drain_events(timeout=2)
        assert len(received) == 2 and redis_db.llen("jobs") == 1
        received[1][1].ack()
