# Gemini CMR: two set-up commands for a new user (see README).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYS_STAMP := .sys-deps-ok
SYS_PKGS := libegl1 libgl1-mesa-dri libgl1 libglib2.0-0 libfontconfig1 libdbus-1-3 libxkbcommon0 \
  libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-shape0 \
  libxcb-xkb1 libxkbcommon-x11-0 xvfb xauth
# For the PACS tests only (a local Orthanc); where they cannot be installed those tests skip with the reason.
TEST_SYS_PKGS := orthanc orthanc-dicomweb
PYTEST_ARGS ?=

.PHONY: demo test test-slow lint sysdeps venv clean help package package-smoke wheel

help:
	@echo "make demo   - install what is missing, then run Gemini CMR on the bundled demo study"
	@echo "make test   - install what is missing, then run the test suite headless"
	@echo "make test-slow - the slow tests (training, long benchmarks)"
	@echo "make lint   - ruff and the import contracts (import-linter)"
	@echo "make package - desktop bundle dist/gemini-cmr/ (PyInstaller); make package-smoke tests it"
	@echo "make wheel  - wheel and sdist in dist/ (python -m build)"

sysdeps:
	@bash packaging/install_sysdeps.sh $(SYS_PKGS)
	@bash packaging/install_sysdeps.sh --optional $(TEST_SYS_PKGS)

$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	@$(VPY) -m pip install -q --upgrade pip >/dev/null
	$(VPY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: sysdeps $(STAMP)

demo: venv
	@$(VPY) -m gemini_cmr.cli.main demo

test: venv
	@$(VPY) -m pytest -q $(PYTEST_ARGS)

test-slow: venv
	@$(VPY) -m pytest -q -m slow $(PYTEST_ARGS)

lint: venv
	@$(VPY) -m ruff check core cli app tests scripts benchmarks recipes
	@$(VPY) -c "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"

# Packaging (docs/packaging.md): PyInstaller one-folder bundle, its smoke test, wheel + sdist.
package: venv
	@$(VPY) -c "import PyInstaller, _pyinstaller_hooks_contrib, build" 2>/dev/null || $(VPY) -m pip install -q -e '.[test,package]'
	@bash packaging/build.sh

dist/gemini-cmr/gemini-cmr:
	@$(MAKE) --no-print-directory package

package-smoke: sysdeps dist/gemini-cmr/gemini-cmr
	@bash packaging/smoke_test.sh dist/gemini-cmr

wheel: venv
	@$(VPY) -c "import build" 2>/dev/null || $(VPY) -m pip install -q -e '.[test,package]'
	@$(VPY) -m build --outdir dist .

clean:
	rm -rf $(VENV) build dist *.egg-info
