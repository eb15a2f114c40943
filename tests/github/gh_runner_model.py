"""A model of how actions/runner reads a step's stdout and file commands, for assertions.

Mirrors ``ActionCommand.TryParseV2`` / ``TryParse`` and ``ActionCommandManager.TryProcessCommand``
(stop-commands state machine) and the Linux branch of the file-command reader. ``lenient=True``
additionally ignores zero-width, combining and control characters while matching, the way a
culture-aware .NET comparison may.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

# .NET Char.IsWhiteSpace: what String.TrimStart() removes.
DOTNET_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
REGISTERED = frozenset(
    {
        "stop-commands",
        "set-env",
        "set-output",
        "save-state",
        "add-mask",
        "add-path",
        "add-matcher",
        "remove-matcher",
        "debug",
        "warning",
        "error",
        "notice",
        "group",
        "endgroup",
        "echo",
    }
)
_DATA_ESCAPES = (("%0D", "\r"), ("%0A", "\n"), ("%25", "%"))
_PROPERTY_ESCAPES = (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%"))
_V1_ESCAPES = (("%3B", ";"), ("%0D", "\r"), ("%0A", "\n"), ("%5D", "]"), ("%25", "%"))


@dataclass
class Command:
    name: str
    properties: dict[str, str]
    data: str
    line: str


def dotnet_read_lines(text: str) -> list[str]:
    """``StreamReader.ReadLine``: ``\\r\\n``, ``\\n`` and a lone ``\\r`` end a line."""
    lines: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(text):
        ch = text[index]
        if ch in "\r\n":
            lines.append("".join(current))
            current = []
            if ch == "\r" and text[index + 1 : index + 2] == "\n":
                index += 1
        else:
            current.append(ch)
        index += 1
    if current:
        lines.append("".join(current))
    return lines


def _unescape(text: str, table: tuple[tuple[str, str], ...]) -> str:
    for escaped, plain in table:
        text = text.replace(escaped, plain)
    return text


def _skeleton(text: str, lenient: bool) -> str:
    if not lenient:
        return text
    return "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf", "Mn", "Me"))


def parse_v2(line: str, registered: set[str], *, lenient: bool = False) -> Command | None:
    message = _skeleton(line, lenient).lstrip("".join(DOTNET_WHITESPACE))
    if lenient:
        message = message.lstrip()
    if not message.startswith("::"):
        return None
    end = message.find("::", 2)
    if end < 0:
        return None
    info = message[2:end]
    name = info.split(" ", 1)[0]
    if name.lower() not in registered:
        return None
    properties: dict[str, str] = {}
    if " " in info:
        for prop in filter(None, info.split(" ", 1)[1].strip().split(",")):
            pair = [part for part in prop.split("=", 1) if part]
            if len(pair) == 2:
                properties[pair[0]] = _unescape(pair[1], _PROPERTY_ESCAPES)
    return Command(name, properties, _unescape(message[end + 2 :], _DATA_ESCAPES), line)


def parse_v1(line: str, registered: set[str], *, lenient: bool = False) -> Command | None:
    message = _skeleton(line, lenient)
    start = message.find("##[")
    if start < 0:
        return None
    close = message.find("]", start)
    if close < 0:
        return None
    info = message[start + 3 : close]
    name = info.split(" ", 1)[0]
    if name.lower() not in registered:
        return None
    properties: dict[str, str] = {}
    if " " in info:
        for prop in filter(None, info.split(" ", 1)[1].split(";")):
            pair = [part for part in prop.split("=", 1) if part]
            if len(pair) == 2:
                properties[pair[0]] = _unescape(pair[1], _V1_ESCAPES)
    return Command(name, properties, _unescape(message[close + 1 :], _V1_ESCAPES), line)


@dataclass
class RunnerModel:
    """Feeds stdout to the command processor; records what the runner would act on."""

    lenient: bool = False
    honour_stop_commands: bool = True
    registered: set[str] = field(default_factory=lambda: set(REGISTERED))
    processed: list[Command] = field(default_factory=list)
    plain: list[str] = field(default_factory=list)
    _stop_token: str | None = None

    def feed(self, text: str) -> RunnerModel:
        for line in dotnet_read_lines(text):
            self._line(line)
        return self

    def _line(self, line: str) -> None:
        command = parse_v2(line, self.registered, lenient=self.lenient) or parse_v1(
            line, self.registered, lenient=self.lenient
        )
        if command is None:
            self.plain.append(line)
            return
        if self._stop_token is not None:
            if command.name.lower() == self._stop_token.lower():
                self.registered.discard(self._stop_token.lower())
                self._stop_token = None
                self.processed.append(command)
            else:
                self.plain.append(line)
            return
        if command.name.lower() == "stop-commands" and self.honour_stop_commands:
            self._stop_token = command.data
            self.registered.add(command.data.lower())
        self.processed.append(command)

    @property
    def paused(self) -> bool:
        return self._stop_token is not None


def parse_file_commands(text: str) -> dict[str, str]:
    """The runner's ``NAME=VALUE`` / ``NAME<<DELIM`` reader for GITHUB_OUTPUT and GITHUB_STATE (Linux)."""
    values: dict[str, str] = {}
    index = 0

    def read_line() -> str | None:
        nonlocal index
        if index >= len(text):
            return None
        newline = text.find("\n", index)
        if newline < 0:
            line, index = text[index:], len(text)
        else:
            line, index = text[index:newline], newline + 1
        return line

    while (line := read_line()) is not None:
        if not line:
            continue
        equals, heredoc = line.find("="), line.find("<<")
        if equals >= 0 and (heredoc < 0 or equals < heredoc):
            name, value = line.split("=", 1)
            values[name] = value
        elif heredoc >= 0:
            name, delimiter = line.split("<<", 1)
            assert name, "empty name"
            assert delimiter, "empty delimiter"
            start = end = index
            while (inner := read_line()) != delimiter:
                assert inner is not None, f"delimiter {delimiter} not found"
                end = index - 1
            values[name] = text[start:end] if end > start else ""
        else:
            raise AssertionError(f"invalid file command line {line!r}")
    return values
