"""Settings reach the functions: every Settings field is deployed to the functions that read it, set by the stack,
or marked local-only (cdk/link_fetcher_cdk/environment.py), and a value in `.env` arrives in the template."""

from __future__ import annotations

import os
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from pydantic import SecretStr

from cdk.link_fetcher_cdk.config import PROJECT_ROOT, load
from cdk.link_fetcher_cdk.environment import (
    FUNCTION_SETTINGS,
    LOCAL_ONLY,
    STACK_SETTINGS,
    function_environment,
    variable_value,
)
from cdk.link_fetcher_cdk.stack import LinkFetcherStack
from link_fetcher.settings import Settings

pytestmark = pytest.mark.timeout(600)
CLASSIFICATION = "cdk/link_fetcher_cdk/environment.py"


@pytest.mark.unit
def test_every_setting_is_deployed_set_by_the_stack_or_local_only() -> None:
    deployed = {field for fields in FUNCTION_SETTINGS.values() for field in fields}
    places = {"FUNCTION_SETTINGS": deployed, "STACK_SETTINGS": set(STACK_SETTINGS), "LOCAL_ONLY": set(LOCAL_ONLY)}
    problems = []
    for field in Settings.model_fields:
        found = [name for name, fields in places.items() if field in fields]
        if len(found) != 1:
            problems.append(
                f"{field.upper()} is in {found or 'none'}: list it in {CLASSIFICATION} under the functions that "
                "read it (FUNCTION_SETTINGS), or in STACK_SETTINGS, or in LOCAL_ONLY with the reason"
            )
    for name, fields in places.items():
        problems.extend(
            f"{name} names {field}, which Settings does not have" for field in fields - Settings.model_fields.keys()
        )
    assert problems == []
    assert set(FUNCTION_SETTINGS) == {path.parent.name for path in (PROJECT_ROOT / "lambdas").glob("*/handler.py")}
    assert all(reason.strip() for reason in LOCAL_ONLY.values())


@pytest.mark.unit
def test_each_function_reads_back_what_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables, read by Settings as a function reads them, give the values they were written from."""
    overrides = {
        "platforms": ["S2B", "S2C"],
        "product_type": "S2MSI2A",
        "max_acquisition_age_days": 7,
        "cdse_catalogue_url": "https://catalogue.example.org",
        "cdse_page_size": 250,
        "relay_workers": 3,
        "relay_max_attempts": 4,
        "reconcile_requeue_after_hours": 6.5,
        "stac_page_size": 50,
        "stac_http_attempts": 2,
        "download_concurrency": 2,
    }
    written = Settings(_env_file=None, **overrides)
    for function, fields in FUNCTION_SETTINGS.items():
        environment = function_environment(function, written)
        for name in list(os.environ):
            if name.lower() in Settings.model_fields:
                monkeypatch.delenv(name)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        read = Settings(_env_file=None)
        assert {field: getattr(read, field) for field in fields} == {field: getattr(written, field) for field in fields}
    assert function_environment("relay", written) == {
        "RELAY_BATCH_SIZE": "10",
        "RELAY_MAX_ATTEMPTS": "4",
        "RELAY_WORKERS": "3",
    }


@pytest.mark.unit
def test_a_secret_is_never_written_in_plain_text() -> None:
    with pytest.raises(TypeError, match="Secrets Manager"):
        variable_value(SecretStr("hunter2"))


def test_a_dotenv_setting_reaches_the_functions_that_read_it(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "RELAY_WORKERS=3\nRECONCILE_REQUEUE_AFTER_HOURS=6\nSTAC_PAGE_SIZE=50\nSTAC_HTTP_ATTEMPTS=2\n"
        "PLATFORMS=S2B,S2C\nREDIS_URL=redis://127.0.0.1:6379/0\nCDSE_PASSWORD=not-deployed\n"
        "DEPLOY_IDENTIFIER=envtest\n"
    )
    config, settings = load(env_file)
    assert config.identifier == "envtest"
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    stack = LinkFetcherStack(app, config.identifier, project_root=PROJECT_ROOT, config=config, settings=settings)
    functions = Template.from_stack(stack).find_resources("AWS::Lambda::Function")

    def variables(name: str) -> dict[str, object]:
        function = stack.functions[name]
        return functions[stack.get_logical_id(function.node.default_child)]["Properties"]["Environment"]["Variables"]

    for name in ("relay", "link_fetcher", "link_subscription", "stac_fetcher"):
        assert variables(name)["RELAY_WORKERS"] == "3"
    assert variables("reconcile")["RECONCILE_REQUEUE_AFTER_HOURS"] == "6.0"
    assert (variables("stac_fetcher")["STAC_PAGE_SIZE"], variables("stac_fetcher")["STAC_HTTP_ATTEMPTS"]) == ("50", "2")
    assert variables("date_generator")["PLATFORMS"] == variables("link_fetcher")["PLATFORMS"] == "S2B,S2C"
    # Each function gets what it reads and no more; local-only values and secrets reach none.
    assert "STAC_PAGE_SIZE" not in variables("relay") and "RELAY_WORKERS" not in variables("downloader")
    for name in stack.functions:
        assert "REDIS_URL" not in variables(name) and "CDSE_PASSWORD" not in variables(name)
