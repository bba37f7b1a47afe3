"""Everything Dagster needs from the Whop side: the extract assets and their checks."""

import dagster as dg

from whop_pipeline.whop import assets, checks

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([checks]),
)
