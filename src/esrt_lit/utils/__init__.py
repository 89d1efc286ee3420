"""Plumbing of the Hydra entry points: errors, run folders, resolvers, instantiators, logging, checkpoint files, tables.

Import from the modules (``esrt_lit.utils.task`` ...): the package re-exports nothing, so that a command
importing one of them (``upscale`` needs :mod:`~esrt_lit.utils.task` only, 0.1–0.3 s) does not pay for the
others (Lightning and Hydra's instantiation: 2.4–2.7 s more, measured on the 2-core CI machine).
"""
