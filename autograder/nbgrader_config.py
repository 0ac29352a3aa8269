"""nbgrader configuration for the course (loaded by ../nbgrader_config.py and by the grader).

Run nbgrader commands from the repository root: nbgrader reads nbgrader_config.py from the
directory it runs in.
"""

import os

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file

_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

c.CourseDirectory.root = _root
c.CourseDirectory.course_id = "dlopt"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "course"
c.CourseDirectory.submitted_directory = os.path.join("autograder", "submitted")
c.CourseDirectory.autograded_directory = os.path.join("autograder", "autograded")
c.CourseDirectory.feedback_directory = os.path.join("autograder", "feedback")
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_root, "autograder", "gradebook.db")

# What a student sees where the solution was: grep-able, and it names what to do.
c.ClearSolutions.code_stub = {
    "python": '# YOUR CODE HERE\nraise NotImplementedError("replace this line with your code")'
}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
