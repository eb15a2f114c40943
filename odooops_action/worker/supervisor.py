"""The worker process: N slots on threads, one LISTEN thread, and SIGTERM/SIGINT handling.

Signal handlers only record the request (no locks, no logging: they run in the main thread between
two bytecodes and could otherwise deadlock on a lock it holds); the main thread notices, logs,
and wakes idle slots.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from types import FrameType

from odooops_action.store.base import RunStore
from odooops_action.worker.context import WorkerContext
from odooops_action.worker.notify import PgListener
from odooops_action.worker.options import worker_ids
from odooops_action.worker.registry import WorkerRegistry
from odooops_action.worker.slot import ClaimedRunsLookup, Slot

StoreOpener = Callable[[], tuple[RunStore, ClaimedRunsLookup | None]]
JOIN_TICK = 0.2


def run_worker(ctx: WorkerContext, open_store: StoreOpener, listen_dsn: str | None) -> int:
    ids = worker_ids(ctx.options.concurrency, ctx.options.worker_name)
    log = ctx.log.bind(worker=ids[0] if len(ids) == 1 else ids[0].rsplit("-", 1)[0])
    listener = PgListener(listen_dsn, ctx.wakeup, ctx.cancel_watch, log) if listen_dsn else None
    stores = [open_store() for _ in ids]
    ctx.registry = WorkerRegistry(lambda: open_store()[0], ids, ctx.options.filters, log)
    slots = [
        Slot(ctx, worker_id, store, lookup) for worker_id, (store, lookup) in zip(ids, stores, strict=True)
    ]
    previous = _install_signal_handlers(ctx)
    try:
        code = _supervise(ctx, log, slots, stores, listener)
        log("worker_stopped", exit_code=code, runs=sum(slot.processed for slot in slots))
        return code
    finally:
        # Last: until the worker has stopped, a further signal only hurries it.
        _restore_signal_handlers(previous)


def _supervise(
    ctx: WorkerContext,
    log: Callable[..., None],
    slots: list[Slot],
    stores: list[tuple[RunStore, ClaimedRunsLookup | None]],
    listener: PgListener | None,
) -> int:
    """Run the slots on threads until they end; the highest slot exit code."""
    results: dict[str, int] = {}
    log(
        "worker_started",
        slots=len(slots),
        mode="listen" if listener else "poll",
        command=" ".join(ctx.options.command),
    )
    try:
        if ctx.registry is not None:
            ctx.registry.start()
        if listener is not None:
            listener.start()
        threads = [
            threading.Thread(target=_run_slot, args=(slot, results), name=slot.worker_id, daemon=True)
            for slot in slots
        ]
        for thread in threads:
            thread.start()
        _wait_for(threads, ctx, log)
    finally:
        if ctx.registry is not None:
            ctx.registry.stop()
        if listener is not None:
            listener.stop()
        for store, _ in stores:
            with contextlib.suppress(Exception):
                store.close()
    return max(results.values(), default=0)


def _run_slot(slot: Slot, results: dict[str, int]) -> None:
    results[slot.worker_id] = 1
    results[slot.worker_id] = slot.run()


def _wait_for(threads: list[threading.Thread], ctx: WorkerContext, log: Callable[..., None]) -> None:
    announced = 0
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(JOIN_TICK)
        if ctx.shutdown.requested and announced == 0:
            announced = 1
            log(
                "shutdown_requested",
                signal=ctx.shutdown.signal_name,
                grace=ctx.options.shutdown_grace,
            )
            ctx.wakeup.notify()
        if ctx.shutdown.forced and announced == 1:
            announced = 2
            log("shutdown_forced", level="warn")


_Handler = Callable[[int, FrameType | None], object] | int | None


def _install_signal_handlers(ctx: WorkerContext) -> dict[signal.Signals, _Handler]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        ctx.shutdown.request(signal.Signals(signum).name)

    previous: dict[signal.Signals, _Handler] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, request_stop)
    return previous


def _restore_signal_handlers(previous: dict[signal.Signals, _Handler]) -> None:
    """Put the previous handlers back, except that a default one (die, or KeyboardInterrupt) now
    ignores the signal: the worker has stopped cleanly, and a late second Ctrl-C or SIGTERM must
    not turn its exit into a death by signal or a traceback."""
    for sig, handler in previous.items():
        default = handler in (signal.SIG_DFL, signal.default_int_handler)
        signal.signal(sig, signal.SIG_IGN if default else handler)
