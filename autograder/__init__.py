"""The course's grader: release, grade, export and feedback, on top of nbgrader's gradebook.

Grading runs each notebook in its own kernel and decides every verdict in the grader's own
process (see autograder/README.md). Run ``python -m autograder --help`` from the repository root.
"""
