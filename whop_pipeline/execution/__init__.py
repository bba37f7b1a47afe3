"""Running jobs in this process for one connection (the command line and the web app): the
preflight, the local Dagster instance and the sync with its progress and report."""
