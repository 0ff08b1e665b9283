# pacsbox: `make run` serves, `make test` proves it. Both work on a fresh
# Debian machine as root with no terminal.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test test-fast bench lint typecheck image test-image clean system-deps test-deps soak fuzz viewer

$(STAMP): pyproject.toml
	@bash scripts/system-deps.sh base
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@$(BIN)/pip install -q 'systemd-python>=235' || echo "systemd-python not built; notify.py uses the socket protocol"
	@touch $@

# The OHIF viewer at /viewer: @ohif/app from the npm registry at the pinned version
# and integrity (pacsbox/web/viewer_fetch.py), unpacked into ViewerDirectory. Quick
# once there; without the registry one line says so and the rest still builds.
viewer: $(STAMP)
	@$(BIN)/python -m pacsbox.web.viewer_fetch $$([ -f var/PACSBOX.ini ] && echo --config var/PACSBOX.ini)

run: viewer
	@mkdir -p var
	@[ -f var/PACSBOX.ini ] || $(BIN)/pacsbox default-config --out var/PACSBOX.ini
	$(BIN)/pacsbox serve --config var/PACSBOX.ini

test-deps:
	@bash scripts/system-deps.sh test

# The image layers (tests/image: nspawn, qemu) are part of make test: the
# image is (re)built first when its inputs changed (about a minute from
# scratch); without the network, or with PACSBOX_IMAGE_TESTS=0, their tests
# skip with one line saying why. A build that fails otherwise fails make test.
test: test-deps lint typecheck viewer
	PYTHON=$(BIN)/python bash image-build/build.sh --for-tests
	PACSBOX_REQUIRE_TOOLS=1 $(BIN)/pytest -q -p no:cacheprovider --durations=25

# The developer's loop: unit and integration tests only (no DCMTK peers, no
# image), well under two minutes; the type check first (seconds once cached).
test-fast: typecheck
	$(BIN)/pytest -q -p no:cacheprovider tests/unit tests/integration

# Power cuts, long form (make test runs a few rounds of each): 100 on the
# volatile file system (about 20 min) and 20 of the qemu image killed
# mid-ingest (about 40 min); summaries in bench/results/soak-fs.json and
# soak-qemu.json.
soak: test-deps $(STAMP)
	PYTHON=$(BIN)/python bash image-build/build.sh --for-tests
	PACSBOX_REQUIRE_TOOLS=1 PACSBOX_SOAK_ROUNDS=100 PACSBOX_QEMU_SOAK_ROUNDS=20 \
		$(BIN)/pytest -q -p no:cacheprovider tests/powercut/test_fs_powercut.py \
		tests/image/test_qemu_powercut.py

# Each fuzz target long (make test runs each for a bounded number of
# executions): PACSBOX_FUZZ_SECONDS per target, 300 by default. A crash
# leaves its input in the work folder printed; copy it to tests/fuzz/crashes/.
PACSBOX_FUZZ_SECONDS ?= 300
fuzz: $(STAMP)
	@for t in $$($(BIN)/python -c "from tests.fuzz import harness; print(' '.join(sorted(harness.targets())))"); do \
		echo "fuzz $$t: $(PACSBOX_FUZZ_SECONDS) s"; \
		$(BIN)/python -m tests.fuzz.run $$t --seconds $(PACSBOX_FUZZ_SECONDS) --work /tmp/pacsbox-fuzz-$$t 2>&1 \
			| grep -a "stat::number_of_executed_units\|stat::average_exec\|Uncaught\|Defect\|Test unit written" \
			|| true; \
	done

bench: test-deps $(STAMP)
	$(BIN)/python -m bench.run

lint: $(STAMP)
	$(BIN)/ruff check pacsbox tests bench
	$(BIN)/ruff format --check pacsbox tests bench

# mypy over pacsbox/ with pyproject's [tool.mypy]: catches a call to a name
# that no longer exists, inside unannotated functions too.
typecheck: $(STAMP)
	$(BIN)/mypy

image:
	bash image-build/build.sh

test-image: image $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider tests/image

clean:
	rm -rf $(VENV) var bench/results/*.json pacsbox/web/ohif
