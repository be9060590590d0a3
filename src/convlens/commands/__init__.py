"""Sub-commands of `convlens`, one module per view family.

Every module in this package is imported by `convlens.cli.build_parser`; each registers its
commands with `convlens.cli.command` and declares options with `convlens.cli.options`.
"""
