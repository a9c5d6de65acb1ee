"""memjax experiments: one command-line entry point per paper claim.

Each module exposes ``define_flags()``, ``config_from_flags(values)`` and
``run(config, workdir, control)``; ``memjax.cli.main`` runs it from the command
line and ``memjax.cli.execute`` in-process (tests).
"""
