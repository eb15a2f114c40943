"""Forward TCP connections from LISTEN_HOST:LISTEN_PORT to TARGET_HOST:TARGET_PORT until stopped.

    python .github/scripts/tcp_forward.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT

ci.yml's `action` job uses it to make the local stack's REST server (bound to 127.0.0.1 on the
runner) reachable from the Action's container, which sees the runner only as its Docker network's
gateway. Python rather than socat: the hosted image has no socat, and installing it would make the
job depend on Ubuntu's package mirrors. Prints one line once listening; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

CHUNK = 64 * 1024
# How long a refused client may take to finish sending before its connection is closed anyway.
DRAIN_SECONDS = 5.0


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then pass the half-close on."""
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """End a client's connection with an orderly close: end of stream first, then read (and drop)
    what it sent until its own end of stream. Closing a socket with unread data would send a reset
    instead, which the client may see before it has finished writing (ENOTCONN, ECONNRESET)."""
    try:
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(DRAIN_SECONDS):
            while await reader.read(CHUNK):
                pass
    except (ConnectionError, OSError, TimeoutError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def bridge(
    client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, target: tuple[str, int]
) -> None:
    try:
        target_reader, target_writer = await asyncio.open_connection(*target)
    except OSError as error:
        print(f"tcp_forward: cannot reach {target[0]}:{target[1]}: {error}", file=sys.stderr, flush=True)
        await refuse(client_reader, client_writer)
        return
    try:
        await asyncio.gather(pipe(client_reader, target_writer), pipe(target_reader, client_writer))
    finally:
        for writer in (client_writer, target_writer):
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


async def serve(listen: tuple[str, int], target: tuple[str, int]) -> None:
    server = await asyncio.start_server(
        lambda reader, writer: bridge(reader, writer, target), listen[0], listen[1], reuse_address=True
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"tcp_forward: {listen[0]}:{listen[1]} -> {target[0]}:{target[1]}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str]) -> int:
    if len(argv) != 4 or not argv[1].isdigit() or not argv[3].isdigit():
        print("usage: tcp_forward.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve((argv[0], int(argv[1])), (argv[2], int(argv[3]))))
    except OSError as error:
        print(f"tcp_forward: cannot listen on {argv[0]}:{argv[1]}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
