"""Settings by concern: every group reads the variables `.env.example` lists (SPEC §6), values can be given by
those names, and each rule is checked where its group is read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from link_fetcher.settings import Settings, groups, read_settings, variables

pytestmark = pytest.mark.unit
ENV_EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"


def test_the_groups_read_exactly_the_variables_env_example_lists() -> None:
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    read = [variable for group in groups().values() for _, variable in variables(group)]
    assert len(read) == len(set(read)), "a variable read by two fields"
    # DEPLOY_* are the CDK app's (cdk/link_fetcher_cdk/config.py); AWS_ENDPOINT_URL is boto3's.
    assert set(read) == {name for name in listed if not name.startswith("DEPLOY_")} - {"AWS_ENDPOINT_URL"}


def test_each_group_reads_its_variables_prefixed_or_not(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("CDSE_PAGE_SIZE=250\nPULL_SUBSCRIPTION_ID=from-file\n")
    monkeypatch.setenv("EMBEDDED_DB_DIR", "/var/pg")
    monkeypatch.setenv("FRESHNESS_SLO_SECONDS", "60")
    monkeypatch.setenv("GATEWAY_MAX_COUNT", "7")
    settings = read_settings(env_file)
    assert settings.cdse.page_size == 250 and settings.subscription.pull_subscription_id == "from-file"
    assert settings.database.embedded_db_dir == Path("/var/pg") and settings.relay.freshness_slo_seconds == 60
    assert settings.gateway.max_count == 7
    monkeypatch.chdir(tmp_path)
    assert Settings().cdse.page_size == 250  # the working directory's `.env`, as get_settings() reads it


def test_values_are_given_by_their_variables_names() -> None:
    settings = read_settings(None, relay_workers=2, subscription_ids="AB, cd", platforms="s2b")
    assert (settings.relay.workers, settings.subscription.ids, settings.criteria.platforms) == (
        2,
        ["ab", "cd"],
        ["S2B"],
    )
    with pytest.raises(TypeError, match="no setting is read from WORKERS"):
        read_settings(None, workers=2)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"platforms": "S2A,S9Z"}, "unknown platform"),
        ({"platforms": ","}, "at least one platform"),
        ({"redis_stream": "to-download:relayed"}, "reserves"),
        ({"cdse_page_size": 0}, "greater than or equal to 1"),
    ],
)
def test_a_bad_value_is_refused_where_its_group_is_read(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        read_settings(None, **values)
