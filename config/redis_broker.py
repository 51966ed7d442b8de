"""The Redis broker transport, taking a burst of messages in one round trip.

kombu's Redis transport takes one message per `BRPOP` and records each in its unacked set
(`QoS.append`, for `acks_late` and the visibility timeout) with another round trip. In a
worker whose loop and writer threads are busy starting runs, every one of those round trips
gives up the GIL and waits to get it back: measured in a burst of 500 runs, sending a `BRPOP`
took 1.7 ms and recording a message 2.7 ms, of which 0.1 and 0.7 ms were CPU. The process
then took in a message every 5.5 ms, and the last of 500 runs started ~2.8 s after the first.

This transport keeps kombu's protocol and keys. When a `BRPOP` returns a message, one Lua
script (`_TAKE`) pops up to the prefetch room's worth of messages waiting behind it in the
same list and records all of them — the one `BRPOP` took too — in the unacked hash and index,
exactly as `QoS.append` would; the messages are then delivered one by one, each recorded
already. So a burst costs a round trip per batch instead of two per message, and the messages
popped by the script are recorded atomically with their pop: a worker killed at any moment
leaves them recorded, to come back after the visibility timeout (kombu's own window between
`BRPOP` and its record remains for the first).

Acknowledgement, rejection, requeue and the visibility-timeout restore are kombu's, unchanged:
the records are those kombu writes. Prefetch stays bounded: a batch takes at most what
`QoS.can_consume_max_estimate` allows (and `MAX_BATCH`; one message when Celery's
`worker_disable_prefetch` is on). If a delivery raises partway through a batch (a consumer's
callback, a shutdown), the messages not yet handed out go back to the head of their queue at
once. A connection lost between the script and its answer leaves the batch recorded but not
delivered: it returns after the visibility timeout, as kombu's one message would. Queues
consumed without acknowledgement (pidbox replies, `celery inspect`) are read as kombu reads
them, unrecorded. A batch comes from the one list its `BRPOP` answered from (one priority
level of one queue); the next `BRPOP` looks at every queue and level again. With a
`global_keyprefix`, or a Redis older than 6.2 (`RPOP` with a count), it behaves exactly as
kombu's transport.

Measured (`tests/bench/bench_worker_pool.py`, 500 runs, runs of three rounds): the burst was
taken in 1.0-1.7 s instead of 2.8-3.4 s, and the worker's CPU per run fell from 12-16 to 8-11 ms.

Used for `redis://` broker URLs (`CELERY_BROKER_TRANSPORT` in `config/settings.py`).
"""

from __future__ import annotations

import logging
from time import time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

log = logging.getLogger(__name__)

MAX_BATCH = 100

# KEYS: the list BRPOP answered from, the unacked hash, the unacked index.
# ARGV: now, how many more to pop, then the message BRPOP took.
# Returns every message (the first one too) in delivery order, and the delivery tag each is
# recorded under as unacked ('' for one it cannot read, which it leaves unrecorded).
_TAKE = """
local now, more = ARGV[1], tonumber(ARGV[2])
local taken = {ARGV[3]}
if more > 0 then
  local popped = redis.call('RPOP', KEYS[1], more)
  if popped then
    for _, item in ipairs(popped) do taken[#taken + 1] = item end
  end
end
local recorded = {}
for i, item in ipairs(taken) do
  local ok, message = pcall(cjson.decode, item)
  local props = ok and type(message) == 'table' and message['properties']
  local info = type(props) == 'table' and props['delivery_info']
  local tag = type(props) == 'table' and props['delivery_tag']
  if type(info) == 'table' and type(tag) == 'string' then
    redis.call('ZADD', KEYS[3], now, tag)
    redis.call('HSET', KEYS[2], tag,
      '[' .. item .. ',' .. cjson.encode(info['exchange'] or '') .. ',' .. cjson.encode(info['routing_key'] or '') .. ']')
    recorded[i] = tag
  else
    recorded[i] = ''
  end
end
return {taken, recorded}
"""


class QoS(kombu_redis.QoS):
    def ack(self, delivery_tag: str) -> None:
        if self._connection_gone("acknowledged"):
            return
        super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if self._connection_gone("rejected"):
            return
        super().reject(delivery_tag, requeue=requeue)

    def _connection_gone(self, what: str) -> bool:
        """A message of a channel whose connection kombu tore down (Redis restarted while its
        task ran) cannot be acknowledged through it: kombu raised AttributeError there, which
        killed Celery's consumer for good. It stays in the unacked index, which the visibility
        timeout restores; its run's lease tells the worker that gets it again that it is done."""
        if getattr(self.channel.connection, "client", None) is not None:
            return False
        log.warning("a message of a closed broker connection cannot be %s; the visibility timeout restores it", what)
        return True

    def append(self, message: Any, delivery_tag: str) -> None:
        """A message the batch script recorded already is only noted here."""
        if self.channel._recorded.pop(delivery_tag, False):
            virtual.QoS.append(self, message, delivery_tag)
            return
        super().append(message, delivery_tag)


class Channel(kombu_redis.Channel):
    QoS = QoS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._recorded: dict[str, bool] = {}  # tags the script recorded, until QoS.append notes them
        self._no_ack_queues: set[str] = set()
        self._take_script: Any = None
        self._batching = True
        super().__init__(*args, **kwargs)  # its BRPOP handler is `self._brpop_read`: this class's

    def close(self) -> None:
        """Close; when kombu has already torn the connection down (Redis restarted under a
        consumer holding unacknowledged messages), close without putting those back.

        kombu's close puts the unacknowledged messages back through the connection's
        parameters, which are gone by then (`connection.client` is None): the AttributeError
        it raised killed Celery's consumer for good ("Unrecoverable error"), and the worker
        stayed up taking nothing. Nothing is lost by skipping it: the messages stay in the
        unacked index, which the visibility timeout restores, and a run's lease and the
        stuck-runs sweep cover the run itself."""
        if getattr(self.connection, "client", None) is None:
            self.do_restore = False
        super().close()

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        """Queues consumed without acknowledgement (kombu's pidbox replies, `celery inspect`)
        are read as kombu reads them: no unacked record, one message per BRPOP."""
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue not in self._active_queues:
            self._no_ack_queues.discard(queue)
        return result

    def _room(self) -> int:
        """How many more messages prefetch allows now; none when Celery's
        `worker_disable_prefetch` replaced `can_consume` (a message only for a free slot)."""
        if "can_consume" in vars(self.qos):
            return 0
        estimate = self.qos.can_consume_max_estimate()
        room = MAX_BATCH if estimate is None else int(estimate)
        return max(min(room, MAX_BATCH) - 1, 0)

    def _brpop_read(self, **options: Any) -> bool:
        if self.global_keyprefix or not self._batching:
            return super()._brpop_read(**options)
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise kombu_redis.Empty()
            dest, item = dest__item
            key = bytes_to_str(dest)
            queue = key.rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(queue)
            if queue in self._no_ack_queues:
                self.connection._deliver(loads(bytes_to_str(item)), queue)
            else:
                self._deliver_batch(self._take(key, item), queue)
            return True
        finally:
            self._in_poll = None
            flush_reauth = getattr(self, "_flush_brpop_reauth", None)  # newer kombu only
            if flush_reauth is not None:
                flush_reauth()

    def _take(self, key: str, item: bytes) -> list[tuple[bytes, str]]:
        """The message BRPOP took and those behind it, each with the delivery tag it is
        recorded under as unacked ('' if not recorded: `QoS.append` records it as kombu does)."""
        try:
            with self.conn_or_acquire() as client:
                if self._take_script is None:
                    self._take_script = client.register_script(_TAKE)
                taken, tags = self._take_script(keys=[key, self.unacked_key, self.unacked_index_key],
                                                args=[time(), self._room(), item], client=client)
        except self.connection_errors:
            raise  # as kombu: the message BRPOP took is not recorded anywhere
        except Exception as exc:
            if "wrong number of arguments" in str(exc).lower():  # a Redis before 6.2: no RPOP count
                log.warning("batched intake unavailable (%s); taking one message per BRPOP from now on", exc)
                self._batching = False
            else:
                log.warning("batched intake failed (%s); this message is taken as kombu takes it", exc)
            return [(item, "")]
        return [(raw, bytes_to_str(tag)) for raw, tag in zip(taken, tags, strict=True)]

    def _deliver_batch(self, batch: list[tuple[bytes, str]], queue: str) -> None:
        """Deliver each message in turn. If a delivery raises (a consumer's callback, a shutdown),
        the messages after it — and it, if it never reached `QoS.append` — go back to the head of
        the queue at once, in order, instead of waiting for the visibility timeout."""
        for index, (raw, tag) in enumerate(batch):
            try:
                payload = loads(bytes_to_str(raw))
            except Exception:  # as kombu: a message that is not JSON is dropped
                log.error("dropped a message from %s that is not valid JSON", queue)
                if tag:
                    self.qos._remove_from_indices(tag).execute()
                continue
            if tag:
                self._recorded[tag] = True
            try:
                self.connection._deliver(payload, queue)
            except BaseException:
                rest = batch[index + 1:]
                if self._recorded.pop(tag, False):
                    rest.insert(0, (raw, tag))
                self._put_back(rest)
                raise

    def _put_back(self, batch: list[tuple[bytes, str]]) -> None:
        for _, tag in reversed(batch):
            if not tag:
                continue
            try:
                self.qos.restore_by_tag(tag)  # to the head of its queue (the end BRPOP takes from)
            except Exception:
                log.exception("could not put message %s back; it returns after the visibility timeout", tag)


class Transport(kombu_redis.Transport):
    Channel = Channel
