# link-fetcher: `make run` runs the main job locally, `make test` runs the test suite. Both install first.
SHELL := /bin/bash
export PIPENV_VENV_IN_PROJECT := 1
# Inside an activated virtualenv (`source .venv/bin/activate`) `python3` would be the venv's, which has no pipenv:
# take the venv back off PATH so make runs the same everywhere (pipenv still uses .venv, PIPENV_VENV_IN_PROJECT).
ifdef VIRTUAL_ENV
export PATH := $(subst $(VIRTUAL_ENV)/bin:,,$(PATH))
unexport VIRTUAL_ENV
endif
export PIPENV_VERBOSITY := -1
PIPENV := python3 -m pipenv
RUN := $(PIPENV) run
YESTERDAY := $(shell date -u -d yesterday +%F 2>/dev/null || python3 -c 'import datetime as d; print(d.date.today()-d.timedelta(1))')

.PHONY: install run test test-unit browser lint format bench clean-db twin message-schema

install: .venv/.installed

.venv/.installed: Pipfile.lock layers/db/pyproject.toml layers/core/pyproject.toml
	@python3 -m pipenv --version >/dev/null 2>&1 || python3 -m pip install --quiet pipenv
	$(PIPENV) sync --dev
	@touch $@

## The main job: fetch yesterday's granules (embedded PostgreSQL unless DATABASE_URL is set).
run: install
	$(RUN) link-fetcher fetch --day $(YESTERDAY)

## The test suite against real PostgreSQL (see scripts/test.sh for how the server is chosen) and Redis.
test: install browser node_modules/.installed
	@scripts/test.sh $(PYTEST_ARGS)

## The unit tier: the tests marked `unit`, which need no PostgreSQL, Redis or network (both URLs point at a closed
## port, so a test that reaches for either fails). Seconds, and no server to start.
test-unit: install node_modules/.installed
	DATABASE_URL=postgresql://unit@127.0.0.1:9/none REDIS_URL=redis://127.0.0.1:9/0 $(RUN) pytest -m unit -q $(PYTEST_ARGS)

## Headless Chromium for the ops console test: Debian's package (Playwright's own browser download is not used).
browser:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

## ruff (lint and format) and mypy (strict on layers/, configured in pyproject.toml).
lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

format: install
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

bench: install
	for b in record relay per_granule fetch_day push stac_fetch download gateway cold_start; do $(RUN) python -m benchmarks.$$b || exit 1; done

## docs/to-download.schema.json, generated from the message types (link_fetcher.messages); a test keeps them equal.
message-schema: install
	$(RUN) python scripts/message_schema.py

clean-db:
	rm -rf .pgdata

## A month of CDSE through the twin of the stack (twin/month.py, docs/operations.md): synthesizes cdk.out/ first when
## it is missing, prints the audit and the cost, writes twin-month.json. DATABASE_URL names the PostgreSQL server.
twin: install
	@ls cdk.out/*.template.json >/dev/null 2>&1 || $(MAKE) --no-print-directory synth
	$(RUN) python -m twin.month --days 30

## AWS (cdk/, docs/deploy.md): `make synth` writes the CloudFormation template to cdk.out/ offline, no AWS
## credentials needed; diff, deploy and destroy use your AWS credentials. Settings come from .env (DEPLOY_*, ...).
.PHONY: synth cfn-lint bootstrap diff deploy destroy
# The CDK CLI and the app's jsii runtime run on the project's Node (package.json's `node`, a supported release from the
# npm registry), never the system's: node_modules/.bin goes first on PATH for the CLI and whatever it starts.
NODE_BIN := $(CURDIR)/node_modules/.bin
CDK := PATH="$(NODE_BIN):$$PATH" CDK_DISABLE_CLI_TELEMETRY=true cdk
# Synth asks nothing of AWS: no credential lookup through the EC2 metadata service.
CDK_OFFLINE := AWS_EC2_METADATA_DISABLED=true

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

synth: install node_modules/.installed
	cd cdk && $(CDK_OFFLINE) $(CDK) synth --quiet --no-notices
	@$(MAKE) --no-print-directory cfn-lint

## AWS's CloudFormation linter over every template in cdk.out/ (.cfnlintrc.yaml): any error or warning fails, e.g. an
## engine version or runtime AWS no longer creates.
cfn-lint: install
	$(RUN) cfn-lint

## Once per account and region, before the first deploy (with your AWS credentials).
bootstrap: install node_modules/.installed
	cd cdk && $(CDK) bootstrap --no-notices

## The twin (docs/twin.md): the synthesized stack run on moto with the real handlers, PostgreSQL and a fake CDSE.
## `make twin-stack` synthesizes, then makes a short run through the stack and prints what happened.
.PHONY: twin-stack
twin-stack: synth
	$(RUN) python -m twin --cdk-out cdk.out

diff: install node_modules/.installed
	cd cdk && $(CDK) diff --no-notices

deploy: install node_modules/.installed
	cd cdk && $(CDK) deploy --no-notices --require-approval broadening

destroy: install node_modules/.installed
	cd cdk && $(CDK) destroy --no-notices
