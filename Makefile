# `make run`: set up .venv and run the main job; `make test`: set up and run the tests.
VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

# The data sets are Debian packages (Fashion-MNIST; the emoji font and Unicode's emoji list) and scikit-image's
# wheel from PyPI, whose photographs are read from the zip without installing it (groupconv.training.data.photos).
DATA_PACKAGES := dataset-fashion-mnist fonts-noto-color-emoji unicode-data
PHOTOS_DIR := $${GROUPCONV_DATA:-$$HOME/.cache/groupconv/data}
PHOTOS_PYTHON := $(shell [ -x $(PYTHON) ] && echo $(PYTHON) || echo python3)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test data experiments bench clean

# The demo needs no data: no apt-get, no root.
run: $(INSTALLED)
	$(VENV)/bin/groupconv demo

# Every test; `.venv/bin/python -m pytest` alone runs the fast default tier.
test: $(INSTALLED) data
	$(PYTHON) -m pytest -m ""

# Installs the data packages only when one is missing, so it costs nothing the second time. Without apt-get it
# says how in one line and goes on: the tests that need the data skip, and training says which file is missing.
data:
	@dpkg -s $(DATA_PACKAGES) >/dev/null 2>&1 || if command -v apt-get >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $(DATA_PACKAGES); \
	else echo "make data: no apt-get here: install the Debian packages $(DATA_PACKAGES) another way (groupconv train --data-dir DIR reads their files); tests that need them skip"; fi
	@ls $(PHOTOS_DIR)/scikit_image-0.26.0-*.whl >/dev/null 2>&1 || $(PHOTOS_PYTHON) -m pip download --quiet --no-deps scikit-image==0.26.0 -d $(PHOTOS_DIR)

# docs/experiments.md's runs, niced, two single-thread runs at a time (see docs/experiments.md for the hours each
# takes); finished runs are kept, so it resumes where it stopped. Keep it from overlapping `make bench`.
EXPERIMENTS := groups specialisation cardinality shuffle
experiments: $(INSTALLED) data
	for name in $(EXPERIMENTS); do nice -n 19 $(VENV)/bin/groupconv experiment $$name --jobs 2 || exit 1; done

# docs/benchmarks.md and docs/images/bench-groups.png (about 30 minutes on 2 cores; keep the machine idle).
bench: $(INSTALLED)
	$(VENV)/bin/groupconv bench --out docs/benchmarks.md

# torch first, pinned: this machine holds the 2.13.0 CPU wheel; an unpinned torch pulls a CUDA build.
# Rebuilt when the kernels' sources change, so `make test` never runs stale kernels.
KERNEL_SOURCES := setup.py $(wildcard src/groupconv/csrc/*.cpp src/groupconv/csrc/cpu/*.cpp src/groupconv/csrc/cpu/*.h)
$(INSTALLED): pyproject.toml $(KERNEL_SOURCES)
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet 'setuptools>=68'
	# --no-build-isolation: setup.py compiles groupconv._C (the C++ kernels) against the torch above
	$(PYTHON) -m pip install --quiet --no-build-isolation -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache src/*.egg-info
