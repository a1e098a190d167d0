# `make run`: set up .venv and run the main job; `make test`: set up and run the tests.
VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: run test clean

run: $(INSTALLED)
	$(VENV)/bin/groupconv demo

test: $(INSTALLED)
	$(PYTHON) -m pytest

# torch first, pinned: this machine holds the 2.13.0 CPU wheel; an unpinned torch pulls a CUDA build.
$(INSTALLED): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache src/*.egg-info
