"""The Definitions load, and hold the groups, jobs, schedules and sensors the project promises."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from whop_pipeline.definitions import build_defs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def definitions() -> dg.Definitions:
    return build_defs()


def test_assets_by_group(definitions):
    graph = definitions.resolve_asset_graph()
    groups: dict[str, set[str]] = {}
    for key in graph.get_all_asset_keys():
        groups.setdefault(graph.get(key).group_name, set()).add(key.to_user_string())
    assert groups == {
        "whop": {"whop_members", "whop_products", "whop_memberships", "whop_payments"},
        "crm": {"crm_people", "crm_products", "crm_opportunities", "crm_notes", "crm_note_targets"},
        "twenty": {
            "twenty_schema",
            "twenty_people",
            "twenty_products",
            "twenty_opportunities",
            "twenty_notes",
            "twenty_note_targets",
        },
        "inbox": {"whop_webhook_inbox"},
        "health": {"churn_model", "lead_model", "customer_health", "twenty_customer_health"},
    }


def test_asset_checks(definitions):
    keys = definitions.resolve_asset_graph().asset_check_keys
    checks = {(key.asset_key.to_user_string(), key.name) for key in keys}
    model_checks = ("holdout_roc_auc", "holdout_brier", "calibration", "has_signal")
    assert checks == {
        ("whop_members", "whop_member_emails_present"),
        ("whop_members", "whop_membership_members_present"),
        ("whop_webhook_inbox", "whop_webhook_inbox_has_no_dead_events"),
        ("twenty_people", "connections_fresh"),
        ("whop_webhook_inbox", "whop_webhook_healthy"),
        *((model, check) for model in ("churn_model", "lead_model") for check in model_checks),
    }
    # Freshness covers every connection: its sensor evaluates it, never a connection's sync run.
    sync_checks = definitions.resolve_job_def("whop_sync_job").asset_layer.asset_graph
    assert "connections_fresh" not in {k.name for k in sync_checks.asset_check_keys}


def test_partitioning(definitions):
    graph = definitions.resolve_asset_graph()
    partitioned = {
        key.to_user_string()
        for key in graph.get_all_asset_keys()
        if graph.get(key).partitions_def is not None
    }
    # Only the reads of Whop are partitioned; the transform and load follow the change queue.
    assert partitioned == {"whop_memberships", "whop_payments"}


def test_load_assets_follow_the_load_order_once(definitions):
    """The order people → products → opportunities → notes → targets comes from one constant."""
    graph = definitions.resolve_asset_graph()
    order = [f"twenty_{n}" for n in ("people", "products", "opportunities", "notes")]
    order.append("twenty_note_targets")
    for before, after in itertools.pairwise(order):
        parents = {k.to_user_string() for k in graph.get(dg.AssetKey(after)).parent_keys}
        assert before in parents, (before, after)


def test_no_command_prints_dagster_beta_warnings():
    """The project filters the BetaWarning of the options it uses on purpose, in one place."""
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", "import whop_pipeline.definitions as d; d.defs()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "BetaWarning" not in result.stderr, result.stderr


def test_no_step_sits_in_a_global_pool_and_each_names_its_api(definitions):
    """A global pool would serialise different connections, whose budgets are separate."""
    graph = definitions.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assert not node.pools, name
        if name.startswith(("twenty_", "whop_webhook")):
            assert definitions.resolve_assets_def(key).op.tags.get("whop/api") == "twenty", name
        elif name.startswith("whop_"):
            assert definitions.resolve_assets_def(key).op.tags.get("whop/api") == "whop", name


def test_every_asset_has_kinds_a_group_and_a_docstring(definitions):
    graph = definitions.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.kinds, key
        assert node.group_name != "default", key
        assert node.description and "\n" not in node.description.strip(), key


def test_jobs_schedules_and_sensors(definitions):
    sync_job = definitions.resolve_job_def("whop_sync_job")
    assert "whop_webhook_inbox" not in {n.name for n in sync_job.graph.node_defs}
    inbox_job = definitions.resolve_job_def("whop_inbox_job")
    assert {n.name for n in inbox_job.graph.node_defs} >= {"whop_webhook_inbox"}
    schedules = {s.name: s for s in definitions.schedules}
    assert {name: s.job_name for name, s in schedules.items()} == {
        "whop_incremental_schedule": "whop_sync_job",
        "whop_reconcile_schedule": "whop_sync_job",
        "health_scores_schedule": "health_scores_job",
        "health_models_schedule": "health_models_job",
    }
    for schedule in schedules.values():
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    # The sync never trains or scores: health has its own jobs.
    assert not {n.name for n in sync_job.graph.node_defs} & {"churn_model", "customer_health"}
    health = definitions.resolve_job_def("health_scores_job").asset_layer.asset_graph
    assert {k.to_user_string() for k in health.executable_asset_keys} == {
        "customer_health",
        "twenty_customer_health",
    }
    sensors = {s.name: s for s in definitions.sensors}
    assert set(sensors) == {
        "whop_webhook_sensor",
        "connection_sync_started",
        "connection_sync_succeeded",
        "connection_run_failed",
        "connection_freshness_sensor",
    }
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())
    assert sensors["whop_webhook_sensor"].default_status == dg.DefaultSensorStatus.RUNNING
    assert sensors["whop_webhook_sensor"].job_name == "whop_inbox_job"


def test_in_process_executor(definitions):
    assert definitions.executor == dg.in_process_executor


def test_resources_read_secrets_from_the_environment(monkeypatch):
    """Set, the environment connection's secrets are EnvVars (the UI shows names, not values);
    unset, the resources are still valid: runs of table connections need none of them."""
    monkeypatch.setenv("WHOP_API_KEY", "k")
    monkeypatch.setenv("TWENTY_API_KEY", "t")
    with_env = build_defs().resources
    assert isinstance(with_env["whop"].api_key, dg.EnvVar)
    assert with_env["whop"].api_key.env_var_name == "WHOP_API_KEY"
    assert with_env["twenty"].api_key.env_var_name == "TWENTY_API_KEY"
    monkeypatch.delenv("WHOP_API_KEY")
    monkeypatch.delenv("TWENTY_API_KEY")
    without = build_defs().resources
    assert without["whop"].api_key is None and without["twenty"].api_key is None


def test_dg_check_defs():
    dg_cli = shutil.which("dg", path=str(Path(sys.executable).parent))
    assert dg_cli, "dg is installed with the project"
    result = subprocess.run(
        [dg_cli, "check", "defs"], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_run_names_its_connection(definitions):
    """Hand-launched runs carry the environment connection's tag (schedules, the sensor, the CLI
    and tagged backfills set their own), so the per-connection run limit covers them too."""
    for job in ("whop_sync_job", "whop_inbox_job"):
        assert definitions.resolve_job_def(job).tags["whop/connection"] == "default"
