"""Where a course's files live, and which lessons it has."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

LESSON_PATTERN = re.compile(r"^\d\d_[a-z0-9_]+$")
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent  # the folder holding this package: where `-m autograder` works
#: The repository checkout the grader runs from (None when it is installed as a package).
CHECKOUT = REPO_ROOT if (REPO_ROOT / "solutions").is_dir() else None


class UsageError(Exception):
    """Bad input for a whole command: one line for the user, and a non-zero exit."""


def default_root() -> Path:
    """The checkout the grader runs from; an installed grader's is the current folder."""
    return CHECKOUT or Path.cwd()


@dataclass(frozen=True)
class Course:
    """The folders of a course root (by default the checkout, see :func:`default_root`)."""

    root: Path = field(default_factory=default_root)

    @property
    def solutions(self) -> Path:
        return self.root / "solutions"

    @property
    def release(self) -> Path:
        return self.root / "course"

    @property
    def grader_dir(self) -> Path:
        return self.root / "autograder"

    @property
    def submitted(self) -> Path:
        return self.grader_dir / "submitted"

    @property
    def autograded(self) -> Path:
        return self.grader_dir / "autograded"

    @property
    def feedback(self) -> Path:
        return self.grader_dir / "feedback"

    @property
    def gradebook(self) -> Path:
        return self.grader_dir / "gradebook.db"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.gradebook}"

    def lessons(self) -> list[str]:
        """Every lesson in solutions/, in order (a folder NN_topic holding NN_topic.ipynb)."""
        if not self.solutions.is_dir():
            return []
        return sorted(p.name for p in self.solutions.iterdir()
                      if LESSON_PATTERN.match(p.name) and (p / f"{p.name}.ipynb").is_file())

    def check_lesson(self, lesson: str) -> str:
        if lesson not in self.lessons():
            known = ", ".join(self.lessons()) or "none"
            raise UsageError(f"unknown lesson '{lesson}' (lessons in {self.solutions}: {known})")
        return lesson

    def source_notebook(self, lesson: str) -> Path:
        return self.solutions / lesson / f"{lesson}.ipynb"

    def release_notebook(self, lesson: str) -> Path:
        return self.release / lesson / f"{lesson}.ipynb"

    def nbgrader_config(self, **overrides) -> Config:
        """nbgrader's configuration for this course root, as nbgrader itself would load it."""
        config = PyFileConfigLoader(
            "nbgrader_config.py", path=str(PACKAGE_DIR)).load_config()
        course_dir = config.CourseDirectory
        course_dir.root = str(self.root)
        course_dir.db_url = self.db_url
        for key, value in overrides.items():
            section, name = key.split(".")
            config[section][name] = value
        return config
