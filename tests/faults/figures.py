"""What the fault-matrix suite measured, printed at the end of the test run (see conftest.py)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tests.devstack.faultproxy import FAULT_KINDS, ProxyStats


@dataclass
class Figures:
    """One scenario's figures: what was asked, what the proxy did, what a user would call a bug."""

    scenario: str
    operations: int
    requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    upstream_errors: int = 0
    duplicates: int = 0
    orphans: int = 0
    untrue_messages: int = 0
    failed_operations: int = 0
    seconds: float = 0.0
    details: list[str] = field(default_factory=list)

    def add_proxy(self, stats: ProxyStats) -> None:
        self.requests += stats.requests
        self.faults.update(stats.faults)
        self.upstream_errors += stats.upstream_errors

    def count(self, problems: list[str], prefix: str = "") -> None:
        """Tally problems named ``duplicate: ...``, ``orphan: ...``, ``untrue: ...``, ``failed: ...``."""
        for problem in problems:
            kind = problem.split(":", 1)[0]
            self.duplicates += kind == "duplicate"
            self.orphans += kind == "orphan"
            self.untrue_messages += kind == "untrue"
            self.failed_operations += kind == "failed"
            self.details.append(prefix + problem)

    @property
    def clean(self) -> bool:
        return self.duplicates == 0 and self.orphans == 0 and self.untrue_messages == 0

    def line(self) -> str:
        kinds = " ".join(f"{kind}={self.faults.get(kind, 0)}" for kind in FAULT_KINDS)
        return (
            f"{self.scenario}: operations={self.operations} requests={self.requests} "
            f"faults={sum(self.faults.values())} [{kinds}] upstream_errors={self.upstream_errors} "
            f"duplicates={self.duplicates} "
            f"orphans={self.orphans} untrue_messages={self.untrue_messages} "
            f"failed_operations={self.failed_operations} seconds={self.seconds:.1f}"
        )

    def report(self) -> str:
        """The line plus the first problems found, for an assertion message."""
        shown = self.details[:15]
        more = f"\n  ... and {len(self.details) - len(shown)} more" if len(self.details) > len(shown) else ""
        return "\n  ".join([self.line(), *shown]) + more


RECORDED: list[Figures] = []
NOTES: list[str] = []


def publish(figures: Figures) -> None:
    """Keep the figures for the terminal summary and print them (visible with -s / -rP)."""
    RECORDED.append(figures)
    print(figures.report())


def note(text: str) -> None:
    """A measured fact outside the proxy's figures (e.g. how fast a killed worker's command ended)."""
    NOTES.append(text)
    print(text)
