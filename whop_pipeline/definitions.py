"""The Dagster definitions: one ``defs`` per external system, merged with the resources and the
in-process executor.

Steps here wait on HTTP, not CPU, so one process runs a whole run (no per-step process start-up);
one run per connection at a time (dagster.yaml) and the clients' own rate limiters keep each
connection's Whop key and Twenty workspace within their limits.
"""

import dagster as dg

from whop_pipeline.crm.definitions import defs as crm_defs
from whop_pipeline.health.definitions import defs as health_defs
from whop_pipeline.inbox.definitions import defs as inbox_defs
from whop_pipeline.orchestration.definitions import defs as orchestration_defs
from whop_pipeline.resources import build_resources
from whop_pipeline.twenty.definitions import defs as twenty_defs
from whop_pipeline.whop.definitions import defs as whop_defs

SYSTEM_DEFS = [whop_defs, crm_defs, health_defs, twenty_defs, inbox_defs]


def build_defs() -> dg.Definitions:
    """The whole project's definitions, resources read from the environment now. Commands that
    run a job in-process call this directly (no code-location load context involved)."""
    return dg.Definitions.merge(
        *SYSTEM_DEFS,
        orchestration_defs,
        dg.Definitions(resources=build_resources(), executor=dg.in_process_executor),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location's entry point (``dg dev``, the daemon, the webserver)."""
    return build_defs()
