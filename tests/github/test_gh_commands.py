"""Workflow commands: escaping, the per-step annotation limit and hostile foreign text."""

from __future__ import annotations

import io
import re

import pytest

from odooops_action.github.commands import AnnotationLevel, WorkflowCommands, neutralise, strip_controls
from tests.github.gh_runner_model import RunnerModel, dotnet_read_lines, parse_v1, parse_v2

HOSTILE_TEXTS = [
    "::add-mask::x",
    "::stop-commands::t",
    "::t::",
    "  ::error::indented",
    "\t::warning title=a::tabbed",
    "\u00a0\u3000::error::unicode spaces",
    "\u200b::error::zero width",
    "\ufeff::notice::bom",
    "\u2061::error::invisible function application",
    "\u0301::warning::leading combining mark",
    ":\u200b:error::split by zero width",
    "##[error]v1 at start",
    "progress 50% ##[warning]v1 in the middle",
    "#\u200b#[error]v1 split by zero width",
    "#\u0301#[error]v1 with combining mark",
    "###[error]three hashes",
    "##[group]fake group",
    "ok\r::warning::after carriage return",
    "ok\r\n::error::after crlf",
    "ok\x85::error::after next-line",
    "ok\u2028::error::after line separator",
    "\x00::error::after nul",
    "\x1b[31m::error::after ansi",
    "::ERROR::upper case",
    "::echo::on",
    "::set-output name=x::y",
    "::add-matcher::/tmp/matcher.json",
    "%0A::error::percent newline",
    "line%0D%0A::warning::encoded crlf",
    "::error file=a%2Cb,line=1::encoded props",
    "\x1b]8;;https://evil.example\x07click\x1b]8;;\x07",
    "text\x1b[8mhidden\x1b[0m",
    "\u202eesrever",
]


def render(action: str, *args: object) -> tuple[str, WorkflowCommands]:
    out = io.StringIO()
    commands = WorkflowCommands(out)
    getattr(commands, action)(*args)
    return out.getvalue(), commands


class TestEscaping:
    def test_annotation_properties_and_data_round_trip_through_the_runner_parser(self) -> None:
        out = io.StringIO()
        commands = WorkflowCommands(out)
        message = "50% done\nsecond line\r\nthird, with: colon"
        title = "a:b,c%\nd"
        file = "dir/we,ird:name.py"

        assert commands.annotate("error", message, title=title, file=file, line=3, end_line=5, col=2)

        [command] = RunnerModel().feed(out.getvalue()).processed
        assert command.name == "error"
        assert command.data == "50% done\nsecond line\nthird, with: colon"  # \r dropped, \n kept
        assert command.properties == {
            "title": "a:b,c%\nd",
            "file": file,
            "line": "3",
            "endLine": "5",
            "col": "2",
        }
        assert out.getvalue().count("\n") == 1, "a command must stay on one physical line"

    def test_group_debug_and_shortcuts(self) -> None:
        out = io.StringIO()
        commands = WorkflowCommands(out)
        with commands.group("Run\nabc"):
            commands.debug("dbg 100%")
            commands.warning("w", file="a.py", line=2)
            commands.notice("n", title="t")
            commands.error("e")
        processed = RunnerModel().feed(out.getvalue()).processed
        assert [(c.name, c.data) for c in processed] == [
            ("group", "Run\nabc"),
            ("debug", "dbg 100%"),
            ("warning", "w"),
            ("notice", "n"),
            ("error", "e"),
            ("endgroup", ""),
        ]
        assert processed[2].properties == {"file": "a.py", "line": "2"}

    def test_groups_do_not_nest(self) -> None:
        out = io.StringIO()
        commands = WorkflowCommands(out)
        commands.start_group("one")
        commands.start_group("two")
        commands.end_group()
        commands.end_group()
        names = [c.name for c in RunnerModel().feed(out.getvalue()).processed]
        assert names == ["group", "endgroup", "group", "endgroup"]

    def test_mask_escapes_and_masks_each_line_and_skips_empty(self) -> None:
        out = io.StringIO()
        commands = WorkflowCommands(out)
        commands.mask("")
        commands.mask("   ")
        commands.mask("p%ss\nline2")
        masks = [c.data for c in RunnerModel().feed(out.getvalue()).processed if c.name == "add-mask"]
        assert masks == ["p%ss\nline2", "p%ss", "line2"]

    def test_unknown_level_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="unknown annotation level"):
            WorkflowCommands(io.StringIO()).annotate("fatal", "x")  # type: ignore[arg-type]


class TestAnnotationLimit:
    def test_ten_per_level_then_plain_lines_and_counts(self) -> None:
        out = io.StringIO()
        commands = WorkflowCommands(out)
        levels: tuple[AnnotationLevel, ...] = ("error", "warning", "notice")
        results = {level: [commands.annotate(level, f"{level} {i}") for i in range(13)] for level in levels}
        commands.annotate("error", "::error::hostile after limit")

        # One error slot stays free for the runner's own error when the job is cancelled or times out.
        assert results["error"] == [True] * 9 + [False] * 4
        assert results["warning"] == results["notice"] == [True] * 10 + [False] * 3
        assert commands.suppressed == {"error": 5, "warning": 3, "notice": 3}
        assert commands.emitted == {"error": 9, "warning": 10, "notice": 10}
        runner = RunnerModel().feed(out.getvalue())
        assert sorted({c.name for c in runner.processed}) == ["error", "notice", "warning"]
        assert len(runner.processed) == 29
        assert any("error 12" in line for line in runner.plain)
        assert any("hostile after limit" in line for line in runner.plain)

    def test_long_messages_are_cut_like_the_runner_with_the_full_text_in_the_log(self) -> None:
        out = io.StringIO()
        commands = WorkflowCommands(out)
        message = "🚀" + "x" * 5000 + "THE END"  # the emoji is two UTF-16 code units for the runner

        commands.error(message, title="OdooOps run failed")
        commands.warning("short")

        runner = RunnerModel().feed(out.getvalue())
        (error,) = [c for c in runner.processed if c.name == "error"]
        assert len(error.data.encode("utf-16-le")) // 2 <= 4096
        assert error.data.startswith("🚀xxx")
        assert error.data.endswith("the full text is in the log above)")
        assert any(line.endswith("x" * 100 + "THE END") for line in runner.plain)  # kept in the log
        assert [c.data for c in runner.processed if c.name == "warning"] == ["short"]

    def test_limit_is_configurable(self) -> None:
        commands = WorkflowCommands(io.StringIO(), per_level_limit=1)
        assert commands.warning("a") is True
        assert commands.warning("b") is False
        assert commands.suppressed["warning"] == 1


class TestUntrusted:
    @pytest.mark.parametrize("lenient", [False, True])
    @pytest.mark.parametrize("text", HOSTILE_TEXTS)
    def test_no_foreign_line_parses_as_a_command(self, text: str, lenient: bool) -> None:
        output, _ = render("untrusted", text)
        runner = RunnerModel(lenient=lenient).feed(output)
        names = [c.name for c in runner.processed]
        assert names[0] == "stop-commands"
        assert len(names) == 2, f"only our stop/resume pair may act, got {names}"
        assert re.fullmatch(r"[0-9a-f]{32}", runner.processed[0].data)
        assert names[1] == runner.processed[0].data
        assert not runner.paused

    @pytest.mark.parametrize("lenient", [False, True])
    def test_neutralised_lines_are_inert_even_without_stop_commands(self, lenient: bool) -> None:
        lines = [line for text in HOSTILE_TEXTS for line in neutralise(text)]
        registered = {"error", "warning", "notice", "add-mask", "stop-commands", "echo", "group", "t"}
        for line in lines:
            for physical in dotnet_read_lines(line + "\n"):
                assert parse_v2(physical, registered, lenient=lenient) is None, physical
                assert parse_v1(physical, registered, lenient=lenient) is None, physical

    def test_the_model_does_detect_the_raw_hostile_texts(self) -> None:
        """Guards the test above: without neutralising, the model must see commands."""
        registered = {"error", "warning", "notice", "add-mask", "stop-commands", "echo", "group"}
        detected = [
            text
            for text in HOSTILE_TEXTS
            if any(
                parse_v2(line, registered, lenient=True) or parse_v1(line, registered, lenient=True)
                for line in dotnet_read_lines(text)
            )
        ]
        assert len(detected) >= 20

    def test_each_block_gets_a_fresh_token(self) -> None:
        out = io.StringIO()
        commands = WorkflowCommands(out)
        commands.untrusted("a")
        commands.untrusted("b")
        tokens = [c.data for c in RunnerModel().feed(out.getvalue()).processed if c.name == "stop-commands"]
        assert len(tokens) == 2
        assert tokens[0] != tokens[1]

    def test_guessing_a_token_does_not_resume(self) -> None:
        output, _ = render("untrusted", "::t::\n##[t]\n::stop-commands::x\n::error::still stopped")
        runner = RunnerModel().feed(output)
        assert runner.processed[0].name == "stop-commands"
        assert len(runner.processed) == 2

    def test_text_is_kept_readable(self) -> None:
        output, _ = render("untrusted", "Building image\x1b[32m ok\x1b[0m\ttabbed\r\nline two\n::error::x")
        lines = output.splitlines()[1:-1]
        assert lines == ["Building image ok\ttabbed", "line two", "\\::error::x"]

    def test_controls_are_removed(self) -> None:
        cleaned = strip_controls("a\x00b\x07c\x1b[1;31md\x7fe\x9bf\u202eg\u200bh\ti")
        assert cleaned == "abcdefgh\ti"

    def test_info_lines_are_neutralised_without_wrapper(self) -> None:
        output, _ = render("info", "status of ::error::x\n::warning::y")
        runner = RunnerModel().feed(output)
        assert runner.processed == []
        assert runner.plain == ["status of ::error::x", "\\::warning::y"]


def test_default_stream_is_stdout_at_write_time(capsys: pytest.CaptureFixture[str]) -> None:
    commands = WorkflowCommands()
    commands.notice("to stdout")
    assert capsys.readouterr().out == "::notice::to stdout\n"


class TestFastPaths:
    """Plain ASCII lines skip the per-character work; the result must be the same as the slow path."""

    ALPHABET = "ab #[:]\t\n\r\x00\x1b\x85\u200b\u0301\u2028\u00a0é%"

    def random_texts(self, count: int) -> list[str]:
        import random

        generator = random.Random(20261201)
        texts = [
            "".join(generator.choice(self.ALPHABET) for _ in range(generator.randint(0, 24)))
            for _ in range(count)
        ]
        printable = "#[:] ab%"
        texts += [
            "".join(generator.choice(printable) for _ in range(generator.randint(0, 24)))
            for _ in range(count)
        ]
        return texts + HOSTILE_TEXTS

    def test_v1_breaking_matches_the_character_walk(self) -> None:
        from odooops_action.github import commands

        for text in self.random_texts(3000):
            for line in text.splitlines() or [""]:
                clean = strip_controls(line)
                assert commands._break_v1_prefixes(clean) == commands._break_v1_prefixes_by_character(
                    clean
                ), line

    def test_strip_controls_fast_path_changes_nothing_it_should_not(self) -> None:
        for line in ["plain ascii ##[x] ::y::", "tab\there", "", "~!@#$%^&*()_+{}|:<>?"]:
            assert strip_controls(line) == line
        assert strip_controls("a\nb") == "ab"
        assert strip_controls("a\nb", keep_newlines=True) == "a\nb"
        assert strip_controls("a\x1b[31mb") == "ab"

    def test_a_long_log_is_neutralised_line_for_line(self) -> None:
        # Its speed (budget 0.6 s for these 100,000 lines) is measured by bench/responsiveness.py.
        text = "\n".join(f"[build] step {n}: compiling module_{n}.py ... ok" for n in range(100_000))
        lines = neutralise(text)
        assert len(lines) == 100_000
        assert lines[12_345] == "[build] step 12345: compiling module_12345.py ... ok"
