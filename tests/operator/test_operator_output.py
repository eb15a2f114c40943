"""The operator commands' output rules (unit): times, colour, tables, untrusted text, durations."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from odooops_action.errors import InputError
from odooops_action.operator import output
from odooops_action.validation import parse_count, parse_duration

NOW = datetime(2026, 12, 1, 21, 1, 18, 70244, tzinfo=UTC)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_one_timestamp_format() -> None:
    assert output.timestamp(NOW) == "2026-12-01 21:01:18 UTC"
    assert output.timestamp(NOW.astimezone(tz=None)) == "2026-12-01 21:01:18 UTC"
    assert output.timestamp(None) == "-"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "just now"),
        (42, "42 s ago"),
        (180, "3 min ago"),
        (7200, "2 h ago"),
        (7500, "2 h 5 min ago"),
        (5 * 86400, "5 d ago"),
        (-90, "in 1 min"),
    ],
)
def test_relative_times(seconds: float, text: str) -> None:
    assert output.ago(NOW - timedelta(seconds=seconds), NOW) == text


def test_colour_only_on_a_terminal_and_never_with_no_color() -> None:
    assert output.colour_enabled(Tty(), {}) is True
    assert output.colour_enabled(io.StringIO(), {}) is False
    assert output.colour_enabled(Tty(), {"NO_COLOR": ""}) is False
    assert output.colour_enabled(Tty(), {"TERM": "dumb"}) is False
    assert output.Printer(Tty(), colour=True).paint("failed", "failed") == "\x1b[31mfailed\x1b[0m"
    assert output.Printer(io.StringIO()).paint("failed", "failed") == "failed"


def test_tables_stay_aligned_with_colour() -> None:
    stream = Tty()
    output.Printer(stream, colour=True).table(
        ["RUN", "STATUS", "N"],
        [["a", "success", "1"], ["bbbb", "failed", "22"]],
        styles=[None, "value", None],
    )
    plain = [
        line.replace("\x1b[32m", "").replace("\x1b[31m", "").replace("\x1b[1m", "").replace("\x1b[0m", "")
        for line in stream.getvalue().splitlines()
    ]
    assert plain == ["RUN   STATUS   N", "a     success  1", "bbbb  failed   22"]


def test_untrusted_text_is_inert() -> None:
    assert output.safe("ok\n::set-output name=x::y\x1b[2J\r") == "ok\\x0a::set-output name=x::y\\x1b[2J\\x0d"
    assert output.safe("x" * 50, 10) == "xxxxxxxxx…"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800), ("1w", 604800), ("30", 30), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2x", "-1h", "0", "h", "nan", "inf", "1e400"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InputError, match="--since must be a positive duration"):
        parse_duration(text)


def test_counts() -> None:
    assert parse_count("20", "--limit", minimum=1, maximum=1000) == 20
    for bad in ("0", "1001", "-1", "1.5", "x", "٣"):
        with pytest.raises(InputError, match="--limit"):
            parse_count(bad, "--limit", minimum=1, maximum=1000)


def test_multi_line_text_cannot_start_a_line_with_a_workflow_command() -> None:
    lines = output.lines_of("first\n::add-mask::secret\r\n  ::error::x")
    assert lines == ["first", "  | ::add-mask::secret", "  |   ::error::x"]
    assert not any(line.strip().startswith("::") for line in lines)


def test_the_readme_documents_every_json_field() -> None:
    import re
    from pathlib import Path

    from odooops_action.operator.commands import ARTIFACT_FIELDS, EVENT_FIELDS, RUN_FIELDS, WORKER_FIELDS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.split("`--json` fields")[1].split("\n\n")[1]
    rows = {line.split("|")[1].strip(" `"): line for line in table.splitlines()[2:]}
    documented = {name: set(re.findall(r"`([a-z_]+)`", row)) for name, row in rows.items()}
    assert set(RUN_FIELDS) <= documented["list"]
    assert set(ARTIFACT_FIELDS) | set(EVENT_FIELDS) <= documented["status"]
    assert set(EVENT_FIELDS) <= documented["logs"]
    assert set(WORKER_FIELDS) <= documented["workers"]
