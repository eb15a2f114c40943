"""``python -m tests.devstack``: run the stack in the foreground until Ctrl-C or SIGTERM.

Writes ``.devstack.env`` in the repository root once ready and removes it on exit. With
``--database-url`` (a superuser URL) it uses that running PostgreSQL instead of starting one, and
leaves it running on exit.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from tests.devstack import DEFAULT_SCHEMAS, DevStack
from tests.devstack.postgres import REPO_ROOT

ENV_FILE = REPO_ROOT / ".devstack.env"


def write_env_file(path: Path, env: dict[str, str]) -> None:
    lines = [f"{name}={shlex.quote(value)}" for name, value in env.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.devstack", description=__doc__)
    parser.add_argument(
        "--schemas",
        default=",".join(DEFAULT_SCHEMAS),
        help="exposed schemas, comma-separated; the first is the default profile",
    )
    parser.add_argument("--env-file", type=Path, default=ENV_FILE)
    parser.add_argument(
        "--database-url",
        help="superuser URL of a running PostgreSQL to use instead of a throwaway cluster",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    stack = DevStack(
        db_schemas=[s.strip() for s in args.schemas.split(",") if s.strip()],
        database_url=args.database_url,
    )
    try:
        stack.start()
        write_env_file(args.env_file, stack.env())
        for name, value in stack.env().items():
            print(f"{name}={value}", flush=True)
        print(f"devstack ready; env written to {args.env_file}. Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        args.env_file.unlink(missing_ok=True)
        stack.stop()
        print("devstack stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
