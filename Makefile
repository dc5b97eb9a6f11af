# Two commands matter (see README): `make demo` and `make test`. Each bootstraps what it needs:
# Debian packages (prometheus, postgresql-15, kubectl if missing), a .venv with the project and
# its extras. Re-running is quick: every step is skipped when already done.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
MOTO_SERVER := .venv-moto/bin/moto_server

# Jupyter and IPython write under $HOME by default; keep them inside the project.
export RUNBOOKS_HOME := $(CURDIR)
export JUPYTER_CONFIG_DIR := $(CURDIR)/.jupyter/config
export JUPYTER_RUNTIME_DIR := $(CURDIR)/.jupyter/runtime
export IPYTHONDIR := $(CURDIR)/.jupyter/ipython
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test lab bootstrap system python clean moto controlplane

bootstrap: system python

system:
	@bash scripts/bootstrap-system.sh

# The project's own modules are compiled to bytecode here, as pip does for installed packages: an
# editable install leaves it to the first import, which writes nothing where the environment sets
# PYTHONDONTWRITEBYTECODE (these machines do), so every kernel, runner and sandbox pod compiled
# them again (about 0.3 s of each run's start). compileall writes regardless and skips what is up to date.
python: $(VENV)/.installed
	@$(BIN)/python -m compileall -q runbooks_lib runbooks_sandbox

# The archive extra (s3fs: backups and records on S3) is installed too, so that its resolution
# is proven on every fresh machine and the S3 tests run.
$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev,archive]'
	@touch $@

# Two workers (pytest-xdist): the runbook scenarios wait on rollouts and analysis windows most of
# the time, so the other tests run beside them; each shared sandbox stays on one worker (tests/conftest.py).
# (Three were 100 s faster on 2 cores, but the sandbox server tests then ran beside both scenario
# groups, and two of their timings failed in four runs: a green CI is worth more.)
test: bootstrap controlplane $(MOTO_SERVER)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

# The main job: a short game day on a fresh sandbox (one already running is restarted, so the
# drill always starts from the same state). The sandbox stays up afterwards for a look around
# (`make lab`, or kubectl after `. .sandbox/env`); `.venv/bin/runbook sandbox down` stops it.
# The sandbox's cluster is the real control plane: `sandbox up` needs its binaries built.
demo: bootstrap controlplane
	$(BIN)/runbook sandbox down
	$(BIN)/runbook sandbox up
	$(BIN)/runbook gameday --env sandbox

lab: bootstrap controlplane
	$(BIN)/runbook sandbox up
	@mkdir -p .jupyter/workspaces
	. .sandbox/env && $(BIN)/jupyter lab --allow-root --no-browser \
		--ServerApp.root_dir=$(CURDIR)/notebooks \
		--LabApp.workspaces_dir=$(CURDIR)/.jupyter/workspaces

# The S3 tests (tests/test_dr_store_remote.py) run against moto's server mode, an S3 endpoint
# from PyPI. moto gets a venv of its own: beside s3fs in one venv pip backtracks for minutes
# between boto3 and aiobotocore.
moto: $(MOTO_SERVER)

# moto's S3 and its server's own needs (flask), not moto[server], which brings every AWS service's
# (cfn-lint, docker, graphql...) and takes twice as long to install on a fresh machine.
$(MOTO_SERVER):
	@test -x $@ || ($(PYTHON) -m venv .venv-moto && .venv-moto/bin/pip install -q 'moto[s3]' flask flask-cors)

# The real Kubernetes control plane (kube-apiserver, kube-controller-manager, kube-scheduler, etcd)
# and the kubectl of the same release, built from the Go module proxy at the versions of
# controlplane/versions.env. Built once per version into a cache outside the checkout
# (~/.cache/veza-runbooks/controlplane), since a cold build takes minutes on 2 cores; then instant.
# make demo, lab and test build it (`sandbox up` needs it); the first build takes about 12 min on
# 2 cores and 5 GiB of disk (Go's module and build caches, and 299 MiB of binaries).
controlplane:
	@bash scripts/build-controlplane.sh

clean:
	-$(BIN)/runbook sandbox down
	rm -rf $(VENV) .venv-moto .jupyter .pytest_cache
