"""``scale`` wired through the in-process sandbox (``start_sandbox``) and ``whop-pipeline sandbox
--scale N``."""

from __future__ import annotations

import httpx
import pytest

from whop_pipeline.cli import build_parser
from whop_pipeline.cli import sandbox as sandbox_command
from whop_pipeline.sandbox import runner
from whop_pipeline.sandbox.dataset import SIZES, generate_dataset
from whop_pipeline_tests.sandbox.whop_fixtures import WHOP_NOW, WHOP_TLS

pytestmark = pytest.mark.sandbox


def test_start_sandbox_serves_the_scaled_dataset() -> None:
    """Rule: ``start_sandbox(preset, scale=N)`` serves the preset with N times the members,
    memberships and payments (products and plans stay), and says so in ``/_sandbox/dump``."""
    preset = generate_dataset("small", seed=0, now=WHOP_NOW).counts()
    with runner.start_sandbox("small", seed=0, scale=2, now=WHOP_NOW) as sandbox:
        doubled = ("members", "memberships", "payments")
        expected = {kind: n * (2 if kind in doubled else 1) for kind, n in preset.items()}
        assert sandbox.whop.dataset.counts() == expected
        with httpx.Client(verify=WHOP_TLS, timeout=30) as http:
            dump = http.get(f"{sandbox.whop_server.url}/_sandbox/dump").json()
            page = http.get(
                f"{sandbox.whop_base_url}/members",
                params={"account_id": sandbox.whop.account_id, "first": 1},
                headers={"Authorization": f"Bearer {sandbox.whop_api_key}"},
            )
        assert (dump["size"], dump["seed"], dump["scale"], dump["counts"]) == (
            "small",
            0,
            2,
            expected,
        )
        assert page.status_code == 200 and page.json()["page_info"]["has_next_page"]
        assert "dataset small (scale 2): " in runner.describe(sandbox, "small")


def test_start_sandbox_defaults_to_scale_one() -> None:
    """Rule: without ``scale`` the sandbox serves the preset as it is."""
    with runner.start_sandbox("tiny", now=WHOP_NOW) as sandbox:
        spec = SIZES["tiny"]
        counts = sandbox.whop.dataset.counts()
        assert (counts["members"], counts["memberships"], counts["payments"]) == (
            spec.members,
            spec.memberships,
            spec.payments,
        )
        assert sandbox.whop.dataset.scale == 1
        assert "dataset tiny: " in runner.describe(sandbox, "tiny")


def test_cli_takes_scale() -> None:
    """Rule: ``whop-pipeline sandbox --scale N`` passes N to the sandbox (default 1)."""
    assert build_parser().parse_args(["sandbox", "--scale", "2"]).scale == 2
    assert build_parser().parse_args(["sandbox"]).scale == 1


@pytest.mark.parametrize("scale", ["0", "-3"])
def test_cli_refuses_a_scale_below_one(scale: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Rule: a scale below 1 is a usage error (exit code 2), before anything starts."""
    args = build_parser().parse_args(["sandbox", "--scale", scale, "--whop-port", "0"])
    assert sandbox_command.main(args) == 2
    assert "--scale must be a positive integer" in capsys.readouterr().out
