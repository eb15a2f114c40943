"""The worker's pure parts: level prefixes, line reading and splitting, artifact lines, ids, logs."""

from __future__ import annotations

import io
import itertools
import os
import queue
import signal
import threading

import pytest

from odooops_action.errors import InputError, TransientError
from odooops_action.worker import slot
from odooops_action.worker.artifacts import ArtifactsFile, parse_artifact_line
from odooops_action.worker.cli import main as worker_main
from odooops_action.worker.context import WorkerContext
from odooops_action.worker.execution import RunExecution
from odooops_action.worker.log import WorkerLog, format_value
from odooops_action.worker.options import WorkerOptions, worker_ids
from odooops_action.worker.output import (
    MAX_LINE_BYTES,
    OutputItem,
    OutputLine,
    PipeReader,
    StreamClosed,
    split_level,
)
from odooops_action.worker.process import CommandProcess, describe_exit
from tests.github.gh_factories import make_run


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        ("[debug] x", "info", ("debug", "x")),
        ("[INFO] x", "info", ("info", "x")),
        ("[warn] deprecated", "info", ("warn", "deprecated")),
        ("[Warning]deprecated", "info", ("warn", "deprecated")),
        ("[error] boom", "info", ("error", "boom")),
        ("plain", "info", ("info", "plain")),
        (" [error] not at start", "info", ("info", " [error] not at start")),
        ("[fatal] unknown", "info", ("info", "[fatal] unknown")),
    ],
)
def test_level_prefix(text: str, default: str, expected: tuple[str, str]) -> None:
    assert split_level(text, default) == expected  # type: ignore[arg-type]


def read_all(data: bytes, stream: str = "stdout") -> list[OutputItem]:
    """Feed ``data`` through a real pipe into a PipeReader and collect what it produces."""
    read_fd, write_fd = os.pipe()
    sink: queue.Queue[OutputItem] = queue.Queue(maxsize=4)  # small: the reader must block, not drop
    with os.fdopen(read_fd, "rb") as reader_pipe:
        PipeReader(reader_pipe, stream, sink).start()  # type: ignore[arg-type]

        def write() -> None:
            with os.fdopen(write_fd, "wb") as writer:
                writer.write(data)

        writer_thread = threading.Thread(target=write)
        writer_thread.start()
        items: list[OutputItem] = []
        while not items or not isinstance(items[-1], StreamClosed):
            items.append(sink.get(timeout=10))
        writer_thread.join()
    return items


def test_reader_numbers_lines_and_keeps_order() -> None:
    items = read_all(b"[warn] one\r\ntwo\n\nlast without newline")
    lines = [i for i in items if isinstance(i, OutputLine)]
    assert [(i.number, i.level, i.text, i.part) for i in lines] == [
        (1, "warn", "one", 0),
        (2, "info", "two", 0),
        (3, "info", "", 0),
        (4, "info", "last without newline", 0),
    ]
    assert items[-1] == StreamClosed("stdout", None)


def test_reader_splits_long_lines_and_keeps_the_level() -> None:
    long_line = "[error] " + "é" * MAX_LINE_BYTES  # 2 bytes per character: about three pieces
    items = read_all(long_line.encode() + b"\nnext\n", "stderr")
    lines = [i for i in items if isinstance(i, OutputLine)]
    pieces = [i for i in lines if i.number == 1]
    assert len(pieces) >= 3
    assert [p.part for p in pieces] == list(range(1, len(pieces) + 1))
    assert {p.level for p in pieces} == {"error"}
    assert "".join(p.text for p in pieces) == "é" * MAX_LINE_BYTES  # nothing lost, no broken character
    assert all(len(p.text.encode()) <= MAX_LINE_BYTES for p in pieces)
    assert (lines[-1].number, lines[-1].text, lines[-1].part) == (2, "next", 0)
    assert pieces[0].to_event().payload == {"stream": "stderr", "line": 1, "part": 1}


def test_reader_replaces_invalid_utf8_and_nul() -> None:
    lines = [i for i in read_all(b"a\x00b\xffc\n") if isinstance(i, OutputLine)]
    assert lines[0].text == "a\ufffdb\ufffdc"


def test_event_of_a_line() -> None:
    event = OutputLine("stdout", 7, "warn", "careful").to_event()
    assert (event.level, event.message, event.payload) == ("warn", "careful", {"stream": "stdout", "line": 7})


def test_artifact_lines() -> None:
    good = parse_artifact_line(
        '{"artifact_type": "image", "storage_path": "ghcr.io/x/y:1", "size_bytes": 3, "metadata": {"a": 1}}'
    )
    assert (good.artifact_type, good.storage_path, good.size_bytes, good.metadata) == (
        "image",
        "ghcr.io/x/y:1",
        3,
        {"a": 1},
    )
    for bad, why in [
        ("{not json", "not valid JSON"),
        ("[1]", "not a JSON object"),
        ('{"artifact_type": "image"}', "storage_path"),
        ('{"artifact_type": "binary", "storage_path": "x"}', "artifact_type"),
        ('{"artifact_type": "image", "storage_path": "x", "colour": "red"}', "colour"),
        ('{"artifact_type": "image", "storage_path": "x", "size_bytes": -1}', "size_bytes"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_artifact_line(bad)


def test_artifacts_file_reads_only_complete_lines_until_the_end(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "artifacts.jsonl"  # type: ignore[operator]
    file = ArtifactsFile(path)
    assert file.new_lines() == []  # not created yet
    path.write_text('{"a": 1}\n\n{"b"')
    assert file.new_lines() == [(1, '{"a": 1}')]
    with path.open("a") as handle:
        handle.write(': 2}\n{"c": 3}')
    assert file.new_lines() == [(3, '{"b": 2}')]
    assert file.new_lines(final=True) == [(4, '{"c": 3}')]


def test_worker_ids_are_readable_and_unique_per_slot() -> None:
    single = worker_ids(1, pid=4242)
    assert len(single) == 1
    assert single[0].startswith("worker-")
    assert single[0].endswith("-4242")
    several = worker_ids(3, pid=4242)
    assert several == [f"{single[0]}-{slot}" for slot in (1, 2, 3)]
    assert worker_ids(2, "ci-runner") == ["ci-runner-1", "ci-runner-2"]


def test_options_refuse_a_heartbeat_slower_than_the_lease() -> None:
    with pytest.raises(InputError, match="shorter than --lease"):
        WorkerOptions(heartbeat_interval=60, lease_seconds=60)
    with pytest.raises(InputError, match="concurrency"):
        WorkerOptions(concurrency=0)
    assert WorkerOptions(lease_seconds=60).recovery_interval == 30


def test_exit_descriptions() -> None:
    assert describe_exit(0) == (0, "exited with code 0")
    assert describe_exit(3) == (3, "exited with code 3")
    assert describe_exit(-9) == (137, "was killed by SIGKILL")


def test_log_lines_are_key_value() -> None:
    out = io.StringIO()
    WorkerLog(out).bind(worker="w-1")("claimed", run="run-1", reason="two words", empty=None)
    line = out.getvalue()
    assert line.endswith("\n")
    assert line.count("\n") == 1
    assert ' level=info worker=w-1 action=claimed run=run-1 reason="two words" empty=-' in line
    assert format_value('say "hi"') == '"say \\"hi\\""'


class BrokenStream(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_log_nobody_reads_does_not_stop_the_worker() -> None:
    # The worker's stderr pipe closed (its supervisor died): the runs go on, recorded in the database.
    WorkerLog(BrokenStream())("claimed", run="run-1")


class StoreAway:
    """A store whose database is down: every heartbeat and read fails transiently."""

    def __init__(self) -> None:
        self.heartbeats: list[float] = []
        self.now = 0.0

    def heartbeat_run(self, run_id: str, worker_id: str, **_: object) -> object:
        self.heartbeats.append(self.now)
        raise TransientError("connection refused")

    def poll_run(self, run_id: str, **_: object) -> object:
        raise TransientError("connection refused")


def test_a_failed_heartbeat_is_retried_once_a_second_not_every_tick() -> None:
    store = StoreAway()
    ctx = WorkerContext(
        WorkerOptions(heartbeat_interval=10.0, cancel_check_interval=2.0), WorkerLog(io.StringIO())
    )
    execution = RunExecution(ctx, store, "w-1", make_run(status="running"), ctx.log)  # type: ignore[arg-type]
    for tick in range(51):  # 10 s of the supervision loop's 0.2 s ticks, from the heartbeat's due time
        store.now = 10.0 + tick * 0.2
        execution._check_run(store.now)
    gaps = [later - earlier for earlier, later in itertools.pairwise(store.heartbeats)]
    assert len(store.heartbeats) >= 9, store.heartbeats
    assert all(gap >= 1.0 - 1e-9 for gap in gaps), store.heartbeats


DURATION_OPTIONS = [
    "--poll-interval",
    "--heartbeat-interval",
    "--cancel-check-interval",
    "--kill-grace",
    "--shutdown-grace",
]


@pytest.mark.parametrize("value", ["nan", "inf", "NaN", "Infinity"])
@pytest.mark.parametrize("option", DURATION_OPTIONS)
def test_every_duration_option_refuses_nan_and_infinity(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--command", "true", f"{option}={value}"]
    assert worker_main(argv, environ={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}) == 2
    err = capsys.readouterr().err
    assert f"{option} must be" in err
    assert f"number of seconds, got '{float(value)}'" in err


@pytest.mark.slow  # a whole worker, in-process, for a second of retries
def test_once_gives_up_on_an_unreachable_database_with_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real connection refused (nothing listens on port 1), a short bound instead of 30 s."""
    monkeypatch.setattr(slot, "ONCE_GIVE_UP_AFTER", 1.0)
    monkeypatch.setattr(slot, "CLAIM_RETRY_DELAYS", (0.2,))
    argv = ["--once", "--command", "true"]
    # The worker leaves SIGINT and SIGTERM ignored once it has stopped; this process must not keep
    # that (the processes later tests start would inherit it, and ignore Ctrl-C).
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = worker_main(argv, environ={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert code == 1
    err = capsys.readouterr().err
    assert "action=claim_retry" in err
    assert "action=gave_up" in err
    assert "action=worker_stopped exit_code=1" in err


def test_the_command_starts_with_default_signal_dispositions() -> None:
    """Under its guard (a Python process, which ignores SIGPIPE and SIGXFSZ) the command still gets
    SIGPIPE and SIGXFSZ at their defaults, so a pipeline's writer dies quietly when its reader ends."""
    process = CommandProcess.start(["sh", "-c", "grep SigIgn /proc/$$/status"], dict(os.environ))
    try:
        assert process.wait(30) == 0
        ignored = int(process.stdout.read().decode().split()[1], 16)
    finally:
        process.signal_group(signal.SIGKILL)
        process.close_pipes()
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        assert not ignored & (1 << (sig - 1)), f"{sig.name} is ignored in the command"
