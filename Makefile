# Two entry points (README): `make repro` (set up + run the mini pipeline), `make test`.
# Both are safe to re-run: the venv, the install and the kernel are only redone when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.visprompt-installed
# Offline by default: timm/open_clip fail in seconds instead of retrying the hub.
export HF_HUB_OFFLINE ?= 1
export PATH := $(BIN):$(PATH)

.PHONY: setup repro test paper kernel clean-venv screenshots

setup: $(STAMP)

$(STAMP): pyproject.toml src/visprompt/kernel.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	$(BIN)/python -m visprompt.kernel >/dev/null
	touch $@

repro: setup
	dvc repro
	python -m visprompt summary

# Two pytest-xdist workers (the slow end-to-end tests overlap; the tests that start Ray share one
# worker: xdist_group "ray"). PYTEST_WORKERS=0 runs everything in this process.
PYTEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup

# The paper profile (GPU + internet). GPUS=0,1,2,3 first spreads the training over those GPUs
# (python -m visprompt.launch: one Ray task per job fills the cell store), then dvc repro records
# every stage from it.
GPUS ?=
paper: setup
	cd profiles/paper && HF_HUB_OFFLINE=0 dvc repro $(if $(GPUS),splits && HF_HUB_OFFLINE=0 python -m visprompt.launch --gpus $(GPUS) && HF_HUB_OFFLINE=0 dvc repro,)

# What a reader sees: headless Chromium PNGs of the index and the three reports in build/screenshots/
# (Debian: apt-get install chromium). Not part of repro or test.
SHOTS := index vpt/report_vpt vp/report_visual_prompt rpo/report_rpo
screenshots:
	@command -v chromium >/dev/null || { echo "chromium not found: apt-get install chromium (Debian) or put it on PATH"; exit 1; }
	mkdir -p build/screenshots
	for f in $(SHOTS); do chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,2400 \
	  --screenshot=build/screenshots/$$(basename $$f).png file://$(CURDIR)/reports/$$f.html 2>/dev/null; done
	@ls build/screenshots

clean-venv:
	rm -rf $(VENV)
