# nbgrader reads this file from the directory it runs in: run nbgrader from the repository root.
# The course's settings live in autograder/nbgrader_config.py.
c = get_config()  # noqa: F821
load_subconfig("autograder/nbgrader_config.py")  # noqa: F821
