"""The course's late policy: deadlines per lesson and what lateness costs, applied at export.

Raw scores are never changed: the gradebook and results.json keep what the checks gave, and
``export`` shows, per row, when the work was handed in, how late it was, the penalty and the
score after it. The policy lives in the course's ``autograder/late_policy.toml``::

    timezone = "Europe/Zurich"   # for deadlines written without a zone (default UTC)
    grace_minutes = 15           # late by less than this is on time (default 0)
    penalty = "per_day"          # per_day, per_hour, zero (late scores 0), none
    amount = 0.1                 # fraction of the lesson's points per started day or hour
    cap = 0.5                    # at most this fraction of the points (default 1)

    [deadlines]
    "01_activations" = "2027-02-01 23:59"

``zero`` and ``none`` are nbgrader's LateSubmissionPlugin methods (``penalty_method``); a
lesson without a deadline is never late. Without the file there is no policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from autograder.course import Course, UsageError

POLICY_FILE = "late_policy.toml"
UNITS = {"per_day": 86400.0, "per_hour": 3600.0}
PENALTIES = (*UNITS, "zero", "none")


@dataclass(frozen=True)
class Lateness:
    """How late one submission was, and what it costs."""

    seconds: float  # 0 when on time (or within the grace period)
    penalty: float  # points taken off the raw score
    final_score: float

    @property
    def late(self) -> bool:
        return self.seconds > 0

    def describe(self) -> str:
        """``2 days 3 h late`` (rounded up to the minute), or '' when on time."""
        if not self.late:
            return ""
        minutes = math.ceil(self.seconds / 60)
        days, rest = divmod(minutes, 24 * 60)
        hours, minutes = divmod(rest, 60)
        parts = [f"{days} day{'s' * (days != 1)}" if days else "",
                 f"{hours} h" if hours else "", f"{minutes} min" if minutes and not days else ""]
        return " ".join(p for p in parts if p) + " late"


@dataclass(frozen=True)
class LatePolicy:
    deadlines: dict[str, datetime] = field(default_factory=dict)
    grace: timedelta = timedelta(0)
    penalty: str = "none"
    amount: float = 0.0
    cap: float = 1.0

    def judge(self, lesson: str, submitted: datetime | None, score: float,
              max_score: float) -> Lateness:
        """The lateness of a submission of ``lesson`` handed in at ``submitted``."""
        deadline = self.deadlines.get(lesson)
        if deadline is None or submitted is None or submitted <= deadline + self.grace:
            return Lateness(0.0, 0.0, score)
        seconds = (submitted - deadline).total_seconds()
        if self.penalty == "zero":
            penalty = score
        elif self.penalty in UNITS:
            units = math.ceil(seconds / UNITS[self.penalty])
            penalty = min(score, min(self.cap, self.amount * units) * max_score)
        else:
            penalty = 0.0
        return Lateness(seconds, penalty, score - penalty)


def load_policy(course: Course) -> LatePolicy:
    """The course's policy (none when it has no late_policy.toml); UsageError when it is wrong."""
    path = course.grader_dir / POLICY_FILE
    if not path.is_file():
        return LatePolicy()
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise UsageError(f"{path}: reading a late policy needs Python 3.11 or later") from None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from None

    def fail(message: str):
        raise UsageError(f"{path}: {message}")

    unknown = set(data) - {"timezone", "grace_minutes", "penalty", "amount", "cap", "deadlines"}
    if unknown:
        fail(f"unknown setting(s) {', '.join(sorted(unknown))}")
    try:
        zone = ZoneInfo(str(data.get("timezone", "UTC")))
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"unknown timezone '{data.get('timezone')}' (an IANA name such as Europe/Zurich)")
    penalty = data.get("penalty", "none")
    if penalty not in PENALTIES:
        fail(f"penalty must be one of {', '.join(PENALTIES)}, not '{penalty}'")
    numbers = {}
    for key, default, low, high in (("grace_minutes", 0, 0, None), ("amount", 0.0, 0, 1),
                                    ("cap", 1.0, 0, 1)):
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < low or (
                high is not None and value > high):
            fail(f"{key} must be a number{f' from {low} to {high}' if high else ' >= 0'}, "
                 f"not {value!r}")
        numbers[key] = float(value)
    if penalty in UNITS and numbers["amount"] == 0:
        fail(f"penalty '{penalty}' needs an amount (the fraction of the points per unit)")
    deadlines = {}
    known = set(course.lessons())
    for lesson, text in dict(data.get("deadlines", {})).items():
        if lesson not in known:
            fail(f"deadline for unknown lesson '{lesson}'")
        moment = _deadline(text, zone)
        if moment is None:
            fail(f"deadline of {lesson}: '{text}' is not a time (such as 2027-02-01 23:59)")
        deadlines[lesson] = moment
    return LatePolicy(deadlines, timedelta(minutes=numbers["grace_minutes"]), penalty,
                      numbers["amount"], numbers["cap"])


def _deadline(value, zone: ZoneInfo) -> datetime | None:
    if isinstance(value, datetime):  # a TOML date-time
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(timezone.utc)
