"""Twenty CRM emulator: REST core and metadata API, upsert semantics, limits, errors, throttling."""

from whop_pipeline.sandbox.twenty.app import TwentyEmulator, create_twenty_app

__all__ = ["TwentyEmulator", "create_twenty_app"]
