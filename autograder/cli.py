"""Command line: ``python -m autograder [--course PATH] {release,grade,export,gradescope,
feedback,report,lint}``; the course is the repository's root unless ``--course`` names another."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from autograder.course import CHECKOUT, Course, UsageError
from autograder.sandbox import BACKENDS


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m autograder",
        description="Release, grade, export and give feedback for the course's lessons.")
    parser.add_argument("--course", type=Path, default=None, metavar="PATH",
                        help="the course root: the folder holding solutions/ and course/ "
                             "(default: this repository)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("release", help="regenerate course/ from solutions/ (all lessons by "
                                       "default)")
    p.add_argument("lessons", nargs="*", metavar="LESSON")

    p = sub.add_parser("grade", help="grade one lesson for every student folder in DIR")
    p.add_argument("lesson", metavar="LESSON")
    p.add_argument("--submissions", required=True, type=Path, metavar="DIR",
                   help="one folder per student id, each with that student's notebook")
    p.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="submissions graded at once (default: number of cores)")
    p.add_argument("--cell-timeout", type=_positive_float, default=60, metavar="SECONDS",
                   help="longest a single cell may run (default 60)")
    p.add_argument("--timeout", type=_positive_float, default=300, metavar="SECONDS",
                   help="longest a whole notebook may run (default 300)")
    p.add_argument("--sandbox", choices=BACKENDS, default=None,
                   help="how student kernels are isolated: auto (default: root as root, "
                        "userns otherwise), root, userns (bubblewrap, no root needed) or "
                        "none (your own rights: trusted submissions only)")
    p.add_argument("--no-sandbox", action="store_true", help="the same as --sandbox none")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="grade on an existing Dask cluster (tcp://host:8786)")
    p.add_argument("--force", action="store_true",
                   help="regrade submissions that are unchanged since they were graded")
    p.add_argument("--timestamps", type=Path, metavar="FILE",
                   help="a CSV of student_id,timestamp rows: when each submission was handed "
                        "in (default: the folder's timestamp.txt, else the file's time)")

    p = sub.add_parser("export", help="write the gradebook as CSV (and for Gradescope, Canvas)")
    p.add_argument("--csv", type=Path, metavar="FILE",
                   help="student_id,lesson,score,max_score: one row per student and lesson")
    p.add_argument("--gradescope", type=Path, metavar="DIR",
                   help="Gradescope results.json files: DIR/STUDENT/LESSON/results.json")
    p.add_argument("--canvas", type=Path, metavar="FILE",
                   help="a CSV for Canvas's gradebook import")
    p.add_argument("--mistakes", type=Path, metavar="FILE",
                   help="per exercise and named mistake, how many students (every graded "
                        "lesson)")

    p = sub.add_parser("gradescope", help="write the autograder package Gradescope runs for "
                                          "LESSON (a folder, or a .zip to upload)")
    p.add_argument("lesson", metavar="LESSON")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="DIR_OR_ZIP")
    p.add_argument("--visibility", default="visible",
                   help="when students see the tests: visible (default), after_due_date, "
                        "after_published or hidden")
    p.add_argument("--stdout-visibility", default="hidden",
                   help="when students see the grader's log (default hidden)")

    p = sub.add_parser("feedback", help="write one HTML page per student for LESSON")
    p.add_argument("lesson", metavar="LESSON")

    p = sub.add_parser("report", help="what the class got wrong: an HTML page, JSON and CSV "
                                      "per lesson, for the instructor")
    p.add_argument("lesson", nargs="?", metavar="LESSON",
                   help="one lesson (default: every graded lesson)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where to write them (default: autograder/reports/)")

    p = sub.add_parser("lint", help="check the instructor notebooks in solutions/")
    p.add_argument("lessons", nargs="*", metavar="LESSON")
    p.add_argument("--static", action="store_true",
                   help="only the checks that do not run the notebooks")
    return parser


def _course_at(path: Path | None) -> Course:
    """The course at ``path`` (--course), else the checkout's, else the current folder's."""
    if path is None:
        if CHECKOUT:
            return Course(CHECKOUT)
        path, told = Path.cwd(), "this folder"
    else:
        told = f"--course {path}"
    root = path.expanduser().resolve()
    if not root.is_dir():
        raise UsageError(f"{told}: no such folder")
    if not (root / "solutions").is_dir():
        raise UsageError(f"{told}: no solutions/ folder there (a course root holds "
                         f"solutions/, the instructor's notebooks, and course/, the release); "
                         f"run from a course root or pass --course PATH")
    return Course(root)


def _interpreter_on_path() -> None:
    """Put this interpreter's folder first on PATH, for the tools nbgrader runs by name
    (``alembic``): a virtual environment's python run without activating it (cron, IDEs, hub
    services) would otherwise find none, or another environment's."""
    folder = str(Path(sys.executable).parent)
    entries = os.environ.get("PATH", "").split(os.pathsep)
    if entries[:1] != [folder]:
        os.environ["PATH"] = os.pathsep.join([folder, *(e for e in entries if e)])


def _sandbox_option(args: argparse.Namespace) -> str:
    if args.no_sandbox and args.sandbox not in (None, "none"):
        raise UsageError(f"--no-sandbox contradicts --sandbox {args.sandbox}: give one of them")
    return "none" if args.no_sandbox else (args.sandbox or "auto")


def main(argv: list[str] | None = None, course: Course | None = None) -> int:
    args = build_parser().parse_args(argv)
    _interpreter_on_path()
    try:
        course = course or _course_at(args.course)
        if args.command == "release":
            from autograder.release import release

            for path in release(course, args.lessons):
                print(f"released {path.relative_to(course.root)}")
        elif args.command == "grade":
            from autograder.grading import grade

            results = grade(course, args.lesson, args.submissions, workers=args.workers,
                            cell_timeout=args.cell_timeout, budget=args.timeout,
                            sandbox=_sandbox_option(args), scheduler=args.scheduler,
                            force=args.force, timestamps=args.timestamps)
            print(f"{len(results)} submission(s) of {args.lesson} graded")
        elif args.command == "export":
            from autograder.export import (
                export_canvas,
                export_csv,
                export_gradescope,
                export_mistakes,
            )

            if not (args.csv or args.gradescope or args.canvas or args.mistakes):
                raise UsageError("say where to export: --csv FILE, --gradescope DIR, "
                                 "--canvas FILE or --mistakes FILE")
            if args.csv:
                print(f"wrote {export_csv(course, args.csv)} row(s) to {args.csv}")
            if args.gradescope:
                count = export_gradescope(course, args.gradescope)
                print(f"wrote {count} Gradescope result file(s) under {args.gradescope}")
            if args.canvas:
                print(f"wrote {export_canvas(course, args.canvas)} student(s) to {args.canvas}")
            if args.mistakes:
                print(f"wrote {export_mistakes(course, args.mistakes)} row(s) to "
                      f"{args.mistakes}")
        elif args.command == "gradescope":
            from autograder.gradescope import build_package

            out = build_package(course, args.lesson, args.output, visibility=args.visibility,
                                stdout_visibility=args.stdout_visibility)
            print(f"wrote the Gradescope autograder for {args.lesson} to {out}")
        elif args.command == "feedback":
            from autograder.feedback import write_feedback

            paths = write_feedback(course, args.lesson)
            print(f"wrote {len(paths)} feedback page(s) under "
                  f"{course.feedback.relative_to(course.root)}/")
        elif args.command == "report":
            from autograder.report import write_reports

            paths = write_reports(course, [args.lesson] if args.lesson else [], args.out)
            for path in paths:
                shown = path.relative_to(course.root) if path.is_relative_to(course.root) \
                    else path
                print(f"wrote {shown}")
        elif args.command == "lint":
            from autograder.lint import lint

            problems = lint(course, args.lessons, run=not args.static)
            for problem in problems:
                print(problem)
            print(f"{len(problems)} problem(s) in solutions/")
            return 1 if problems else 0
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


def console() -> None:
    """The ``dlopt-autograder`` command (the instructor package's console script)."""
    sys.exit(main())
