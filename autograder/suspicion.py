"""What the instructor should look at: code that reaches for the grader, and what it caused.

Nothing here changes a score (the sandbox and the out-of-kernel verdicts already make these
attempts worthless); it only flags the submission, in the gradebook and in results.json.
"""

from __future__ import annotations

import re

PATTERNS = [
    (r"\bsolutions\b|gradebook|nbgrader_config|\bautograder\b|\.\./",
     "refers to the grader's files or walks up the folder tree"),
    (r"input_transformers|events\.register|showtraceback|excepthook|set_custom_exc|"
     r"ast_transformers", "changes how IPython runs or reports cells"),
    # the grading contract's internals (a baked check's `from dlopt.grading import check` is not)
    (r"dlopt\.grading\.(probe|codec|judge|scenario|exercise|baked|drivers)\b|"
     r"from\s+dlopt\.grading\s+import[^\n]*\b(probe|codec|judge|scenario|Outcome)\b|"
     r"_dlopt_probe|RESULT_MIME|publish_display_data",
     "touches the grader's probe"),
    (r"^\s*(np|numpy|torch|math|builtins|dlopt)(\.\w+)+\s*=(?!=)",
     "replaces a library function"),
    (r"\bos\.kill|\bkillpg\b|\bsignal\.signal|\bos\._exit|\bsys\.exit",
     "sends signals, ignores them or exits the kernel"),
    (r"\bsubprocess\b|\bos\.system\b|\bos\.fork\b|\bPopen\b|\bsocket\b|\burllib\b|"
     r"\brequests\b|\bctypes\b", "starts processes, uses the network or native code"),
    (r"\b__(eq|ne|array|array_ufunc|bool)__\b|\(\s*(np\.|numpy\.)?ndarray\s*\)",
     "defines its own comparisons or arrays"),
    (r"os\.environ|/proc/|/etc/|expanduser|Path\.home", "reads the environment or system files"),
    (r"""['"]/(tmp|work|home|root|var|srv|mnt|opt|dev)\b""", "reaches for absolute paths"),
    (r"\bpickle\b|results\.json|\.log['\"]|\bsqlite3\b",
     "writes pickles, result or log files, or opens databases"),
]
SUSPICIOUS_ERRORS = {"PermissionError", "MemoryError", "BlockingIOError", "CellTimeout",
                     "ConnectionError", "URLError", "OSError",
                     "KeyboardInterrupt"}  # only the grader interrupts: a cell ran too long


def scan_code(sources: list[str]) -> list[str]:
    """One flag per kind of suspicious code found in the student's cells."""
    flags = []
    for pattern, meaning in PATTERNS:
        for index, source in enumerate(sources):
            match = re.search(pattern, source, flags=re.MULTILINE)
            if match:
                flags.append(f"code {meaning} (student cell {index + 1}: "
                             f"{match.group(0).strip()[:40]!r})")
                break
    return flags


def runtime_flags(cell_errors: list[dict], truncated: bool) -> list[str]:
    flags = []
    names = sorted({e["ename"] for e in cell_errors if e["ename"] in SUSPICIOUS_ERRORS})
    if names:
        flags.append(f"cells hit the sandbox's limits or walls ({', '.join(names)})")
    if truncated:
        flags.append("output flood: outputs were cut")
    return flags
