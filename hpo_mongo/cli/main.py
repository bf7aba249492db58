"""``hpo-mongo``: inspect and repair experiments stored in MongoDB (``python -m hpo_mongo`` too).

Every command takes ``--mongo URL`` (or ``$HPO_MONGO_URL``), before or after its name; experiment
commands take ``--exp-key KEY`` (omit it for the default experiment, exp_key None, shown as ``(default)``);
read commands take ``--json``. Errors print one line and exit non-zero (see ``_errors``).
"""
from __future__ import annotations

import click

from .._version import __version__
from . import admin, inspection
from ._errors import ErrorHandlingGroup
from ._options import group_options


@click.group(cls=ErrorHandlingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="hpo-mongo", message="%(prog)s %(version)s")
@group_options
def cli() -> None:
    """Inspect and manage hpo_mongo experiments stored in MongoDB.

    Every command reads --mongo URL or HPO_MONGO_URL (mongodb://host[:port]/db[/collection]),
    given before or after the command name. Omit --exp-key for the default experiment
    (exp_key None), shown as "(default)". Tables fit the terminal (COLUMNS); --wide shows them whole.

    \b
    Example:
        export HPO_MONGO_URL=mongodb://localhost:27017/hpo
        hpo-mongo experiments
        hpo-mongo --mongo mongodb://db-host/hpo status --exp-key mnist
        hpo-mongo list --exp-key mnist --sort loss --limit 10
    """


for _cmd in inspection.COMMANDS + admin.COMMANDS:
    cli.add_command(_cmd)
