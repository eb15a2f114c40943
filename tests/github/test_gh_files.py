"""File commands: outputs and state as the runner reads them, the summary size limit, secrets."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from odooops_action.github import files
from odooops_action.github.files import SUMMARY_LIMIT_BYTES, FileCommands, SecretInOutputError
from tests.github.gh_runner_model import parse_file_commands


@pytest.fixture
def runner_env(tmp_path: Path) -> dict[str, str]:
    env = {}
    for variable in ("GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_STEP_SUMMARY"):
        path = tmp_path / variable.lower()
        path.touch()  # the runner creates the files before the step starts
        env[variable] = str(path)
    return env


def read(env: dict[str, str], variable: str) -> str:
    return Path(env[variable]).read_bytes().decode("utf-8")  # no newline translation


class TestOutputs:
    def test_single_and_multi_line_values_parse_back(self, runner_env: dict[str, str]) -> None:
        commands = FileCommands(runner_env)
        values = {
            "run_id": "run-123",
            "empty": "",
            "equals": "a=b<<c",
            "multi": "line 1\nline 2\n",
            "crlf": "a\r\nb",
            "lone_cr": "a\rb",
            "looks_like_delimiter": "x\nghadelimiter_\n",
            "unicode": "héllo ✅\nsecond",
        }
        for name, value in values.items():
            commands.set_output(name, value)

        assert parse_file_commands(read(runner_env, "GITHUB_OUTPUT")) == values

    def test_multi_line_values_use_a_fresh_random_delimiter(self, runner_env: dict[str, str]) -> None:
        commands = FileCommands(runner_env)
        commands.set_output("a", "1\n2")
        commands.set_output("b", "3\n4")
        delimiters = re.findall(r"^\w+<<(.+)$", read(runner_env, "GITHUB_OUTPUT"), flags=re.MULTILINE)
        assert len(delimiters) == 2
        assert delimiters[0] != delimiters[1]
        assert all(re.fullmatch(r"ghadelimiter_[0-9a-f]{32}", d) for d in delimiters)

    def test_a_delimiter_present_in_the_value_is_never_used(
        self, runner_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        tokens = iter(["0" * 32, "1" * 32])
        monkeypatch.setattr(files, "token_hex", lambda _n: next(tokens))
        value = f"before\nghadelimiter_{'0' * 32}\nafter"
        FileCommands(runner_env).set_output("tricky", value)
        text = read(runner_env, "GITHUB_OUTPUT")
        assert text.startswith(f"tricky<<ghadelimiter_{'1' * 32}\n")
        assert parse_file_commands(text) == {"tricky": value}

    @pytest.mark.parametrize("name", ["", "1abc", "a b", "a=b", "a<<b", "a\nb", "über"])
    def test_invalid_names_are_refused(self, runner_env: dict[str, str], name: str) -> None:
        with pytest.raises(ValueError, match="invalid output name"):
            FileCommands(runner_env).set_output(name, "x")
        assert read(runner_env, "GITHUB_OUTPUT") == ""

    def test_secrets_are_refused_without_echoing_them(self, runner_env: dict[str, str]) -> None:
        commands = FileCommands(runner_env, secrets={"s3cr3t-token", ""})
        commands.add_secret("another-secret")
        for value in ("s3cr3t-token", "prefix s3cr3t-token suffix", "multi\nanother-secret\n"):
            with pytest.raises(SecretInOutputError) as caught:
                commands.set_output("leak", value)
            assert "s3cr3t" not in str(caught.value)
            assert "another" not in str(caught.value)
        with pytest.raises(SecretInOutputError):
            commands.save_state("leak", "s3cr3t-token")
        commands.set_output("fine", "no secret here")
        assert parse_file_commands(read(runner_env, "GITHUB_OUTPUT")) == {"fine": "no secret here"}
        assert read(runner_env, "GITHUB_STATE") == ""

    def test_secrets_too_short_to_tell_from_text_do_not_block_outputs(
        self, runner_env: dict[str, str]
    ) -> None:
        commands = FileCommands(runner_env, secrets={"x"})
        commands.add_secret("ab")
        commands.set_output("artifact_url", "ghcr.io/example/x:abc")
        assert parse_file_commands(read(runner_env, "GITHUB_OUTPUT")) == {
            "artifact_url": "ghcr.io/example/x:abc"
        }

    def test_module_level_helpers_use_the_process_environment(
        self, runner_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for key, value in runner_env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("STATE_run_id", "run-9")
        files.set_output("run_id", "run-9")
        files.save_state("run_id", "run-9")
        with pytest.raises(SecretInOutputError):
            files.set_output("token", "ghp_xyz12345", secrets=["ghp_xyz12345"])
        assert files.read_state("run_id") == "run-9"
        assert files.read_state("missing") is None
        assert parse_file_commands(read(runner_env, "GITHUB_OUTPUT")) == {"run_id": "run-9"}
        assert parse_file_commands(read(runner_env, "GITHUB_STATE")) == {"run_id": "run-9"}


class TestOutsideActions:
    def test_without_env_nothing_is_written_and_nothing_fails(self, tmp_path: Path) -> None:
        commands = FileCommands({})
        commands.set_output("a", "b")
        commands.save_state("a", "b\nc")
        result = commands.append_summary("# hi")
        assert result.written_bytes == len("# hi")
        assert commands.read_state("a") is None
        assert list(tmp_path.iterdir()) == []

    def test_fallback_stream_receives_the_lines(self) -> None:
        fallback = io.StringIO()
        FileCommands({}, fallback=fallback).set_output("run_id", "r1")
        assert fallback.getvalue() == "run_id=r1\n"


class TestSummary:
    def test_appends_in_order(self, runner_env: dict[str, str]) -> None:
        commands = FileCommands(runner_env)
        commands.append_summary("# one\n")
        commands.append_summary("two ✅\n")
        assert read(runner_env, "GITHUB_STEP_SUMMARY") == "# one\ntwo ✅\n"
        assert commands.summary_budget() == SUMMARY_LIMIT_BYTES - len("# one\ntwo ✅\n".encode())

    def test_exactly_the_limit_fits(self, runner_env: dict[str, str]) -> None:
        commands = FileCommands(runner_env)
        result = commands.append_summary("x" * SUMMARY_LIMIT_BYTES)
        assert result.omitted_bytes == 0
        assert Path(runner_env["GITHUB_STEP_SUMMARY"]).stat().st_size == SUMMARY_LIMIT_BYTES
        assert commands.append_summary("y").written_bytes == 0
        assert Path(runner_env["GITHUB_STEP_SUMMARY"]).stat().st_size == SUMMARY_LIMIT_BYTES

    def test_existing_content_counts_and_overflow_is_cut_with_a_note(
        self, runner_env: dict[str, str]
    ) -> None:
        existing = "p" * 700_000
        Path(runner_env["GITHUB_STEP_SUMMARY"]).write_text(existing, encoding="utf-8")
        markdown = "".join(f"line {i} ✅ ééé\n" for i in range(40_000))  # ~800 kB
        result = FileCommands(runner_env).append_summary(markdown)

        data = Path(runner_env["GITHUB_STEP_SUMMARY"]).read_bytes()
        assert len(data) <= SUMMARY_LIMIT_BYTES
        assert len(data) > SUMMARY_LIMIT_BYTES - 1000
        text = data.decode("utf-8")  # never cut inside a character
        assert text.startswith(existing)
        appended = text[len(existing) :]
        assert "Summary truncated" in appended
        kept = appended[: appended.index("\n\n> [!WARNING]")]
        assert markdown.startswith(kept)
        assert kept.endswith("\n")  # cut at a line end
        assert result.written_bytes == len(data) - len(existing)
        assert result.omitted_bytes == len(markdown.encode()) - len(kept.encode())

    def test_a_nearly_full_file_gets_nothing_rather_than_overflowing(
        self, runner_env: dict[str, str]
    ) -> None:
        Path(runner_env["GITHUB_STEP_SUMMARY"]).write_bytes(b"z" * (SUMMARY_LIMIT_BYTES - 10))
        result = FileCommands(runner_env).append_summary("a long paragraph that cannot fit\n")
        assert result.written_bytes == 0
        assert Path(runner_env["GITHUB_STEP_SUMMARY"]).stat().st_size == SUMMARY_LIMIT_BYTES - 10
