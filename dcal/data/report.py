"""Validation report of a face data set: counts and problems found."""
from __future__ import annotations

import logging
import statistics
from dataclasses import asdict, dataclass, field

logger = logging.getLogger(__name__)

SEVERITIES = ("error", "warning")

# Examples kept per problem, enough to find the pattern without flooding logs.
MAX_EXAMPLES = 5


@dataclass
class Problem:
    """One class of problem in a data set, with how often it occurs.

    Attributes:
        kind: a stable identifier, for example ``missing_files``.
        severity: ``error`` (training would be meaningless) or ``warning``
            (the affected items are left out and the rest is usable).
        count: how many items have the problem.
        message: a sentence saying what is wrong and what to do.
        examples: up to ``MAX_EXAMPLES`` affected items.
    """

    kind: str
    severity: str
    count: int
    message: str
    examples: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"invalid severity {self.severity!r}: use 'error' or 'warning'")


@dataclass
class DataReport:
    """Counts and problems of a loaded data set.

    Counts describe what was kept, except ``listed_files``, ``missing_files``,
    ``unreadable_files`` and ``duplicate_paths``, which describe the input.
    """

    source: str = ""
    verify_images: str = "header"
    identities: int = 0
    images: int = 0
    listed_files: int = 0
    missing_files: int = 0
    unreadable_files: int = 0
    duplicate_paths: int = 0
    identities_with_one_image: int = 0
    identities_with_two_or_more: int = 0
    twin_pairs: int = 0
    twin_pairs_usable: int = 0
    images_per_identity: dict[str, float] = field(default_factory=lambda: {"min": 0, "median": 0, "max": 0})
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def usable(self) -> bool:
        """True when no problem is an error."""
        return not self.errors

    def add(self, kind: str, severity: str, message: str, examples=(), count: int | None = None) -> Problem:
        """Record a problem and log it.

        Args:
            kind: the problem's identifier.
            severity: ``error`` or ``warning``.
            message: what is wrong and what to do.
            examples: affected items; the first ``MAX_EXAMPLES`` are kept.
            count: number of affected items, ``len(examples)`` by default.
        """
        examples = [str(e) for e in examples]
        problem = Problem(
            kind=kind,
            severity=severity,
            count=len(examples) if count is None else count,
            message=message,
            examples=examples[:MAX_EXAMPLES],
        )
        self.problems.append(problem)
        level = logging.ERROR if severity == "error" else logging.WARNING
        logger.log(level, "%s: %s (%d; e.g. %s)", kind, message, problem.count, ", ".join(problem.examples) or "-")
        return problem

    def count_images(self, images: dict[str, list[str]]) -> None:
        """Set the identity and image counts from an identity -> paths mapping."""
        sizes = [len(paths) for paths in images.values()]
        self.identities = len(sizes)
        self.images = sum(sizes)
        self.identities_with_one_image = sum(1 for n in sizes if n == 1)
        self.identities_with_two_or_more = sum(1 for n in sizes if n >= 2)
        if sizes:
            self.images_per_identity = {
                "min": min(sizes),
                "median": statistics.median(sizes),
                "max": max(sizes),
            }
        else:
            self.images_per_identity = {"min": 0, "median": 0, "max": 0}

    def raise_if_unusable(self) -> None:
        """Raise ValueError listing every error problem, if there is one."""
        if self.usable:
            return
        lines = [f"- {p.kind}: {p.message}" for p in self.errors]
        raise ValueError(f"data set {self.source!r} is not usable for training:\n" + "\n".join(lines))

    def to_dict(self) -> dict:
        """Return the report as JSON-ready data, with ``usable`` added."""
        data = asdict(self)
        data["usable"] = self.usable
        return data
