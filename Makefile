# Two entry points (README): `make repro` (set up + run the mini pipeline), `make test`.
# Both are safe to re-run: the venv, the install and the kernel are only redone when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.visprompt-installed
# Offline by default: timm/open_clip fail in seconds instead of retrying the hub.
export HF_HUB_OFFLINE ?= 1
export PATH := $(BIN):$(PATH)

.PHONY: setup repro test paper kernel clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml src/visprompt/kernel.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	$(BIN)/python -m visprompt.kernel >/dev/null
	touch $@

repro: setup
	dvc repro
	python -m visprompt summary

test: setup
	$(BIN)/python -m pytest -q

# The paper profile (GPU + internet). GPUS=0,1,2,3 first spreads the training over those GPUs
# (python -m visprompt.launch: one Ray task per job fills the cell store), then dvc repro records
# every stage from it.
GPUS ?=
paper: setup
	cd profiles/paper && HF_HUB_OFFLINE=0 dvc repro $(if $(GPUS),splits && HF_HUB_OFFLINE=0 python -m visprompt.launch --gpus $(GPUS) && HF_HUB_OFFLINE=0 dvc repro,)

clean-venv:
	rm -rf $(VENV)
