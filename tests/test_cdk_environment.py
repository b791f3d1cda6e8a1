"""Settings reach the functions: every settings field is deployed to the functions whose handlers declare its group
(`SETTINGS_READ`), or marked set by the stack or local-only (link_fetcher/settings.py), and a value in `.env`
arrives in the template of each function that reads it."""

from __future__ import annotations

import os
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from pydantic import SecretStr

from cdk.link_fetcher_cdk.config import PROJECT_ROOT, load
from cdk.link_fetcher_cdk.environment import (
    deployed_variables,
    function_environment,
    settings_read,
    variable_value,
)
from cdk.link_fetcher_cdk.stack import LinkFetcherStack
from link_fetcher.settings import LocalOnly, SetByStack, groups, not_deployed, read_settings, variables

pytestmark = pytest.mark.timeout(600)
FUNCTIONS = sorted(path.parent.name for path in (PROJECT_ROOT / "lambdas").glob("*/handler.py"))


@pytest.mark.unit
def test_every_setting_is_deployed_set_by_the_stack_or_local_only() -> None:
    read_somewhere = {group for function in FUNCTIONS for group in settings_read(function)}
    assert read_somewhere <= set(groups().values()), "a handler declares a group Settings does not hold"
    problems = []
    for group in groups().values():
        for field, variable in variables(group):
            marks = not_deployed(group, field)
            if len(marks) > 1:
                problems.append(f"{variable} is marked {len(marks)} times: one of SetByStack or LocalOnly")
            elif marks and not marks[0].reason.strip():
                problems.append(f"{variable}: {type(marks[0]).__name__} needs the reason")
            elif not marks and group not in read_somewhere:
                problems.append(
                    f"{variable} reaches no function: declare {group.__name__} in the SETTINGS_READ of the handlers "
                    "that read it, or mark the field SetByStack or LocalOnly with the reason"
                )
    assert problems == []
    assert {type(mark) for group in groups().values() for field in group.model_fields
            for mark in not_deployed(group, field)} == {SetByStack, LocalOnly}  # fmt: skip


@pytest.mark.unit
def test_each_function_reads_back_what_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables, read by the settings as a function reads them, give the values they were written from."""
    overrides = {
        "platforms": ["S2B", "S2C"],
        "product_type": "S2MSI2A",
        "max_acquisition_age_days": 7,
        "cdse_catalogue_url": "https://catalogue.example.org",
        "cdse_page_size": 250,
        "relay_workers": 3,
        "relay_max_attempts": 4,
        "reprocessed_policy": "replace",
        "subscription_ids": ["ab", "cd"],
        "pull_subscription_id": "pull-1",
        "reconcile_requeue_after_hours": 6.5,
        "stac_page_size": 50,
        "stac_http_attempts": 2,
        "download_concurrency": 2,
    }
    written = read_settings(None, **overrides)
    every_variable = {variable for group in groups().values() for _, variable in variables(group)}
    for function in FUNCTIONS:
        environment = function_environment(function, written)
        for name in every_variable & set(os.environ):
            monkeypatch.delenv(name)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        read = read_settings(None)
        for name, group in groups().items():
            if group in settings_read(function):
                fields = deployed_variables(group)
                assert {field: getattr(getattr(read, name), field) for field in fields} == {
                    field: getattr(getattr(written, name), field) for field in fields
                }, function
    assert function_environment("relay", written) == {
        "RELAY_BATCH_SIZE": "10",
        "RELAY_MAX_ATTEMPTS": "4",
        "RELAY_WORKERS": "3",
        "REPROCESSED_POLICY": "replace",
        "UNFINISHED_DAYS_WINDOW": "30",
        "DELETION_MEMORY_DAYS": "90",
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

    def template_variables(name: str) -> dict[str, object]:
        function = stack.functions[name]
        return functions[stack.get_logical_id(function.node.default_child)]["Properties"]["Environment"]["Variables"]

    for name in ("relay", "link_fetcher", "link_subscription", "stac_fetcher"):
        assert template_variables(name)["RELAY_WORKERS"] == "3"
    assert template_variables("reconcile")["RECONCILE_REQUEUE_AFTER_HOURS"] == "6.0"
    stac = template_variables("stac_fetcher")
    assert (stac["STAC_PAGE_SIZE"], stac["STAC_HTTP_ATTEMPTS"]) == ("50", "2")
    assert template_variables("date_generator")["PLATFORMS"] == template_variables("link_fetcher")["PLATFORMS"]
    assert template_variables("link_fetcher")["PLATFORMS"] == "S2B,S2C"
    # Each function gets what its handler declares and no more (besides what the stack sets); local-only values
    # and secrets reach none.
    set_by_stack = {
        variable
        for group in groups().values()
        for field, variable in variables(group)
        if any(isinstance(mark, SetByStack) for mark in not_deployed(group, field))
    }
    every_variable = {variable for group in groups().values() for _, variable in variables(group)}
    assert set(stack.functions) <= set(FUNCTIONS)  # the puller only in pull mode
    for name in stack.functions:
        given = template_variables(name)
        from_dotenv = {key: value for key, value in given.items() if key in every_variable - set_by_stack}
        assert from_dotenv == function_environment(name, settings), name
        assert "REDIS_URL" not in given and "CDSE_PASSWORD" not in given
    assert "STAC_PAGE_SIZE" not in template_variables("relay") and "CDSE_PAGE_SIZE" not in template_variables(
        "reconcile"
    )
