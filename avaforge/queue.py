"""Work distribution on NATS JetStream: one work-queue subject per stage, durable pull consumers, explicit
ack after outputs are stored, bounded redelivery with backoff, a dead-letter subject, job state in KV.

A message carries JSON (artifact references and settings, never frames). ``Nats-Msg-Id`` de-duplicates
re-submissions within the stream's duplicate window. A handler that raises ``FormatError`` (bad input: it will
never succeed) is dead-lettered at once; any other exception is retried up to ``max_deliver`` times with
growing delays, then dead-lettered with its message, so the job can fail with the stage's error. A worker
reports progress (``in_progress``) every third of ack_wait while it handles an item, so only a worker that
died loses its item after ack_wait; a redelivery of an item still running in this process is never started
a second time. A job can be cancelled: ``work``'s ``cancelled`` callback is asked before an item and every
``cancel_poll_s`` while it runs; a cancelled item is stopped (``avaforge.cancel``), acked and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
from nats.js import api
from nats.js.errors import BadRequestError, NotFoundError

from avaforge import cancel, retention, tls
from avaforge.formats.errors import FormatError

log = logging.getLogger("avaforge.queue")

WORK_STREAM = "AVAFORGE_WORK"
DEAD_STREAM = "AVAFORGE_DEAD"
JOBS_BUCKET = "AVAFORGE_JOBS"


def work_subject(stage: str) -> str:
    return f"avaforge.work.{stage}"


def dead_subject(stage: str) -> str:
    return f"avaforge.dead.{stage}"


@dataclass(frozen=True)
class RetryPolicy:
    max_deliver: int = 4
    backoff_s: tuple[float, ...] = (1.0, 2.0, 4.0)
    ack_wait_s: float = 60.0  # a worker that dies holding an item loses it to another after this
    heartbeat: bool = True  # report progress while an item runs (off only in tests that provoke redelivery)

    def delay(self, delivered: int) -> float:
        return self.backoff_s[min(delivered - 1, len(self.backoff_s) - 1)] if self.backoff_s else 0.0


Handler = Callable[[dict[str, Any]], Awaitable[None]]
CancelCheck = Callable[[dict[str, Any]], Awaitable[bool]]

# the deliveries of every item running in this process, by (stream, stream sequence): a redelivery of one of
# them (its worker missed its progress reports, or two workers of a stage share this process) joins it
# instead of starting a second execution
_running: dict[tuple[str, int], list[Any]] = {}


def running_here() -> int:
    """How many items this process is running now."""
    return len(_running)


async def _report_progress(deliveries: list[Any], ack_wait_s: float) -> None:
    """While a handler runs, tell JetStream every third of ack_wait that the item is in progress: an item that
    takes longer than ack_wait is not redelivered (and done twice) while its worker lives, and a worker that
    dies stops reporting, so its item goes to another after ack_wait. Runs on the event loop: handlers do
    their heavy work in threads, so the reports are never starved."""
    while True:
        await asyncio.sleep(ack_wait_s / 3)
        for msg in list(deliveries):
            try:
                await msg.in_progress()
            except Exception as exc:  # reconnecting: the next report may get through
                log.debug("progress report failed: %s", exc)


async def _watch_cancel(
    payload: dict[str, Any], cancelled: CancelCheck, token: threading.Event, poll_s: float
) -> None:
    """Set the item's cancel token once its job is cancelled (its threads stop at their next check)."""
    while not token.is_set():
        await asyncio.sleep(poll_s)
        try:
            if await cancelled(payload):
                token.set()
        except Exception as exc:  # KV unreachable for a moment: ask again
            log.debug("cancel check failed: %s", exc)


class QueueTlsError(ConnectionError):
    """TLS and the NATS server disagree (its certificate refused, TLS on one side only): a setting to fix."""


async def _connect_nats(url: str, name: str, ca: tls.Ca | None) -> nats.NATS:
    where = url.rpartition("@")[2]  # never the credentials in a message
    scheme = url.partition("://")[0] if "://" in url else "nats"
    if scheme not in ("tls", "nats"):
        raise ValueError(f"NATS URL {where!r}: expected tls://HOST:PORT (TLS) or nats://HOST:PORT")
    secure = scheme == "tls"
    context = tls.client_context(ca) if secure or ca is not None else None
    failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_error(exc: Exception) -> None:
        why = tls.describe(exc)
        if why is None and not secure and "empty response" in str(exc):  # closed without its INFO
            why = "the server sent nothing and closed the connection: a TLS-first port? (use tls://)"
        if why is not None and not failed.done():
            failed.set_result(why)
        log.warning("NATS %s: %s", where, why or f"{type(exc).__name__}: {exc}")

    nc = nats.NATS()
    connecting = asyncio.ensure_future(
        nc.connect(
            url,
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
            error_cb=on_error,
            **({"tls": context, "tls_handshake_first": secure} if context is not None else {}),
        )
    )
    await asyncio.wait({connecting, failed}, return_when=asyncio.FIRST_COMPLETED)
    if not connecting.done():
        connecting.cancel()
        with contextlib.suppress(BaseException):
            await connecting
        with contextlib.suppress(Exception):
            await nc.close()
        raise QueueTlsError(f"NATS {where}: {failed.result()}")
    await connecting
    return nc


class WorkQueue:
    def __init__(self, nc: nats.NATS) -> None:
        self.nc = nc
        self.js = nc.jetstream()

    @classmethod
    async def connect(cls, url: str, name: str = "avaforge", ca: tls.Ca | None = None) -> WorkQueue:
        """Connect to ``url`` and make sure the streams exist. ``tls://HOST:PORT``: TLS from the first byte
        (a server that does not speak TLS never sees the credentials), the certificate verified against
        ``ca`` (default ``$AVAFORGE_TLS_CA``; without one, the system's trust store). ``nats://HOST:PORT``:
        plaintext, chosen explicitly (a server that demands TLS is verified the same way). A refused TLS
        handshake or certificate ends the connect at once with ``QueueTlsError`` (retrying cannot help); an
        unreachable server is retried until it answers."""
        nc = await _connect_nats(url, name, ca if ca is not None else tls.ca_from_env())
        queue = cls(nc)
        await queue.ensure()
        return queue

    async def ensure(self) -> None:
        """Create the streams and the job bucket if they do not exist (idempotent)."""
        await self.js.add_stream(
            api.StreamConfig(
                name=WORK_STREAM,
                subjects=["avaforge.work.>"],
                retention=api.RetentionPolicy.WORK_QUEUE,
                storage=api.StorageType.FILE,
                duplicate_window=300.0,
            )
        )
        keep = retention.Retention.from_env()  # retention limits: deployment settings, applied at each start
        dead = {"max_age": keep.dead_max_age_s or None, "max_msgs": keep.dead_max_msgs or -1}
        try:
            await self.js.add_stream(
                api.StreamConfig(
                    name=DEAD_STREAM, subjects=["avaforge.dead.>"], storage=api.StorageType.FILE, **dead
                )
            )
        except BadRequestError:  # it exists with other limits: set this start's
            await retention.apply(self.js, DEAD_STREAM, **dead)
        try:
            self.jobs = await self.js.key_value(JOBS_BUCKET)
        except NotFoundError:
            self.jobs = await self.js.create_key_value(api.KeyValueConfig(bucket=JOBS_BUCKET, history=5))
        await retention.apply(self.js, f"KV_{JOBS_BUCKET}", max_age=keep.jobs_max_age_s or None)

    async def close(self) -> None:
        await self.nc.drain()

    async def submit(self, stage: str, payload: dict[str, Any], msg_id: str) -> None:
        await self.js.publish(
            work_subject(stage), json.dumps(payload, sort_keys=True).encode(), headers={"Nats-Msg-Id": msg_id}
        )

    async def pending(self, stage: str) -> int:
        info = await self.js.stream_info(WORK_STREAM, subjects_filter=work_subject(stage))
        return int((info.state.subjects or {}).get(work_subject(stage), 0))

    async def dead_letters(self, stage: str) -> list[dict[str, Any]]:
        sub = await self.js.pull_subscribe(dead_subject(stage), stream=DEAD_STREAM)
        out = []
        try:
            while True:
                msgs = await sub.fetch(batch=50, timeout=0.5)
                out.extend(json.loads(m.data) for m in msgs)
                for m in msgs:
                    await m.ack()
        except TimeoutError:  # nats raises its own subclass or, near the deadline, asyncio's
            pass
        finally:
            await sub.unsubscribe()
        return out

    async def work(
        self,
        stage: str,
        handler: Handler,
        stop: asyncio.Event,
        policy: RetryPolicy | None = None,
        fetch_timeout_s: float = 0.5,
        on_dead: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        cancelled: CancelCheck | None = None,
        cancel_poll_s: float = 1.0,
    ) -> int:
        """Process items of ``stage`` until ``stop`` is set; returns how many were acked.

        An item in progress when ``stop`` is set is finished (graceful shutdown); nothing new is fetched.
        ``cancelled(payload)`` says whether the item's job was cancelled: asked before the item and every
        ``cancel_poll_s`` during it. An item whose deliveries ran out while its workers died (no handler saw
        its last attempt fail) is dead-lettered too, by whichever worker of the stage hears of it.
        """
        policy = policy or RetryPolicy()
        config = api.ConsumerConfig(
            durable_name=stage,
            ack_policy=api.AckPolicy.EXPLICIT,
            max_deliver=policy.max_deliver,
            ack_wait=policy.ack_wait_s,
            filter_subject=work_subject(stage),
        )
        try:  # create, or update an existing durable to this ack wait / max deliver
            await self.js.add_consumer(WORK_STREAM, config)
        except Exception as exc:
            log.warning("consumer %s keeps its old settings: %s", stage, exc)

        async def on_lost(advisory: Any) -> None:
            await self._lost(stage, advisory, on_dead)

        lost = await self.nc.subscribe(
            f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{WORK_STREAM}.{stage}",
            queue=f"avaforge-lost-{stage}",  # one worker of the stage records it
            cb=on_lost,
        )
        sub = await self.js.pull_subscribe(
            work_subject(stage), durable=stage, stream=WORK_STREAM, config=config
        )
        done = 0
        while not stop.is_set():
            try:
                msgs = await sub.fetch(batch=1, timeout=fetch_timeout_s)
            except (
                TimeoutError,  # nats.errors.TimeoutError, or asyncio's near the deadline
                nats.errors.ConnectionClosedError,
                nats.errors.NoRespondersError,
            ):
                continue
            except Exception as exc:  # reconnecting: keep serving
                log.warning("fetch on %s failed: %s", stage, exc)
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                done += await self._handle(stage, msg, handler, policy, on_dead, cancelled, cancel_poll_s)
        await sub.unsubscribe()
        await lost.unsubscribe()
        return done

    async def _lost(
        self, stage: str, advisory: Any, on_dead: Callable[[dict[str, Any]], Awaitable[None]] | None
    ) -> None:
        """JetStream gave up on an item after max_deliver deliveries that were never answered (each worker
        holding it died): dead-letter it like a failure, so its job fails instead of waiting forever."""
        try:
            event = json.loads(advisory.data)
            seq, deliveries = int(event["stream_seq"]), int(event.get("deliveries", 0))
            stored = await self.js.get_msg(WORK_STREAM, seq)
        except Exception as exc:  # already removed (another worker recorded it) or not parseable
            log.debug("max-deliveries advisory on %s not handled: %s", stage, exc)
            return
        if (WORK_STREAM, seq) in _running:  # still running here: late progress reports, not a dead worker
            log.warning("%s item %d ran out of deliveries while running here", stage, seq)
            return
        payload = json.loads(stored.data or b"{}")
        error = f"no worker finished it: {deliveries} deliveries, each worker holding it stopped (killed?)"
        await self._record_dead(stage, payload, error, deliveries, False, on_dead)
        try:
            await self.js.delete_msg(WORK_STREAM, seq)
        except Exception as exc:
            log.debug("lost item %d of %s not deleted: %s", seq, stage, exc)

    async def _handle(
        self,
        stage: str,
        msg: Any,
        handler: Handler,
        policy: RetryPolicy,
        on_dead: Callable[[dict[str, Any]], Awaitable[None]] | None,
        cancelled: CancelCheck | None = None,
        cancel_poll_s: float = 1.0,
    ) -> int:
        delivered = msg.metadata.num_delivered
        payload = json.loads(msg.data)
        # which process holds which message, and the how-many-th delivery it is: the trail that shows a
        # killed worker's item being redelivered and finished once
        trail = f"msg_id={(msg.headers or {}).get('Nats-Msg-Id', '')} delivery={delivered} pid={os.getpid()}"
        key = (msg.metadata.stream, msg.metadata.sequence.stream)
        if key in _running:  # the item runs here already: its execution reports progress and acks for both
            _running[key].append(msg)
            await msg.in_progress()
            log.warning("%s duplicate delivery of an item running here, not started again: %s", stage, trail)
            return 0
        deliveries = _running[key] = [msg]
        try:  # the item leaves _running only once answered: a redelivery meanwhile joins it
            if cancelled is not None and await cancelled(payload):
                await self._ack_all(deliveries)
                log.info("%s item dropped, its job is cancelled: %s", stage, trail)
                return 0
            log.info("%s item taken: %s", stage, trail)
            return await self._execute(
                stage, msg, payload, deliveries, handler, policy, on_dead, cancelled, cancel_poll_s, trail
            )
        finally:
            del _running[key]

    async def _execute(
        self,
        stage: str,
        msg: Any,
        payload: dict[str, Any],
        deliveries: list[Any],
        handler: Handler,
        policy: RetryPolicy,
        on_dead: Callable[[dict[str, Any]], Awaitable[None]] | None,
        cancelled: CancelCheck | None,
        cancel_poll_s: float,
        trail: str,
    ) -> int:
        delivered = msg.metadata.num_delivered
        token = threading.Event()
        tasks = (
            [asyncio.create_task(_report_progress(deliveries, policy.ack_wait_s))] if policy.heartbeat else []
        )
        if cancelled is not None:
            tasks.append(asyncio.create_task(_watch_cancel(payload, cancelled, token, cancel_poll_s)))
        try:
            with cancel.scope(token):  # the handler's threads see this item's token
                await handler(payload)
        except cancel.Cancelled as exc:
            await self._ack_all(deliveries)
            log.info("%s item stopped and dropped (%s): %s", stage, exc, trail)
            return 0
        except FormatError as exc:
            await self._dead(stage, msg, payload, str(exc), delivered, True, on_dead)
            return 0
        except Exception as exc:
            if delivered >= policy.max_deliver:
                await self._dead(
                    stage, msg, payload, f"{type(exc).__name__}: {exc}", delivered, False, on_dead
                )
            else:
                log.warning(
                    "%s item failed (delivery %d/%d), retrying: %s",
                    stage,
                    delivered,
                    policy.max_deliver,
                    exc,
                    extra={"job_id": payload.get("job", "")},
                )
                await msg.nak(delay=policy.delay(delivered))
            return 0
        finally:
            for task in tasks:
                task.cancel()
        log.info("%s item finished: %s", stage, trail)  # the handler ran to its end (counted by make soak)
        await self._ack_all(deliveries)
        log.info("%s item acked: %s", stage, trail)
        return 1

    @staticmethod
    async def _ack_all(deliveries: list[Any]) -> None:
        """Ack an item through each delivery this process holds (acking one acks the item; the others are
        answered so nothing waits on them)."""
        await deliveries[0].ack()
        for extra in deliveries[1:]:
            try:
                await extra.ack()
            except Exception as exc:  # already acked through the first
                log.debug("extra ack: %s", exc)

    async def _dead(
        self,
        stage: str,
        msg: Any,
        payload: dict[str, Any],
        error: str,
        delivered: int,
        poison: bool,
        on_dead: Callable[[dict[str, Any]], Awaitable[None]] | None,
    ) -> None:
        await self._record_dead(stage, payload, error, delivered, poison, on_dead)
        await msg.term()

    async def _record_dead(
        self,
        stage: str,
        payload: dict[str, Any],
        error: str,
        delivered: int,
        poison: bool,
        on_dead: Callable[[dict[str, Any]], Awaitable[None]] | None,
    ) -> None:
        record = {
            "stage": stage,
            "payload": payload,
            "error": error,
            "deliveries": delivered,
            "poison": poison,
        }
        await self.js.publish(dead_subject(stage), json.dumps(record, sort_keys=True).encode())
        if on_dead is not None:
            await on_dead(record)
        log.error(
            "%s item dead-lettered after %d deliveries: %s",
            stage,
            delivered,
            error,
            extra={"job_id": payload.get("job", "")},
        )
