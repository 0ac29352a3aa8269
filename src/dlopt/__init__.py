"""dlopt: the helper package of the course "Deep-learning optimization from first principles".

The package is grouped by role; ``ls`` answers "what decides a verdict" and "where does a
lesson's code live".

Roles
-----
:mod:`dlopt.grading`
    The grading contract, run in all three processes (the instructor's kernel, the student's
    kernel, the grader): scenarios and outcomes as plain data (``scenario``), the one function
    that turns outcomes into a verdict (``judge``), the instructor's exercise definition
    (``exercise``), the visible checks of the student's release, which carry data and no code
    (``baked``), the plain-data codec (``codec``), the grader's probe (``probe``), and the
    ``drivers`` that call a learner's function the way a check needs it (100 steps of an update
    rule, a seeded draw, a simulated device). Everything here decides verdicts, and the
    grader's fingerprint covers all of it.
:mod:`dlopt.kit`
    Helpers several lessons share and that are never graded: offline data, objectives and 2-D
    surfaces, plotting, the figure-widget base, running a learner's unfinished functions
    without crashing an experiment (``learner``), torch bridges, thread and timing helpers,
    the environment report.
:mod:`dlopt.lessons`
    One package per lesson, mirroring ``solutions/NN_topic/``: its labs (experiments), plots
    and explorers.

Instructor material (oracles, hand-written references, named mistakes) is *not* here: it is
the separate package ``dlopt_instructor`` (``instructor/`` in the repository), which the
instructor's notebooks import in their check cells and which students never install.

Lesson -> code
--------------
========================  ===========================================================
lesson                    package
========================  ===========================================================
00_start_here             :mod:`dlopt.kit.env`, :mod:`dlopt.kit.timing` (no lesson package)
01_activations            :mod:`dlopt.lessons.l01_activations`
02_losses_backprop        :mod:`dlopt.lessons.l02_losses_backprop`
03_gradient_descent       :mod:`dlopt.lessons.l03_gradient_descent`
04_adaptive_optimizers    :mod:`dlopt.lessons.l04_adaptive_optimizers`
05_regularization         :mod:`dlopt.lessons.l05_regularization`
06_batch_norm             :mod:`dlopt.lessons.l06_batch_norm`
07_dropout                :mod:`dlopt.lessons.l07_dropout`
08_pytorch_from_numpy     :mod:`dlopt.lessons.l08_pytorch_from_numpy`
09_performance            :mod:`dlopt.lessons.l09_performance`
10_compression            :mod:`dlopt.lessons.l10_compression`
11_distributed            :mod:`dlopt.lessons.l11_distributed`
========================  ===========================================================

Importing ``dlopt`` has no side effects: no rcParams, no seeds, no downloads.
"""

__all__: list[str] = []
