# All set-up happens here: `make run` and `make test` work on a fresh machine with Python 3.11 and pip.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   := demo-data

.PHONY: run desktop-libs test test-slow bench lint demo package clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch; an open range would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

$(DEMO)/labels.json: | $(STAMP)
	$(PY) -m viewer demo-data $(DEMO)

demo: $(DEMO)/labels.json

run: $(STAMP) $(DEMO)/labels.json desktop-libs
	$(PY) -m viewer gui $(DEMO)

# The system libraries Qt's xcb platform plugin needs (fresh Debian/Ubuntu desktops lack some): installed here when
# this runs as root, else the command (with sudo) is printed and make stops before starting the app.
desktop-libs: $(STAMP)
	@cmd="$$($(PY) -m viewer preflight --install-command)" || exit 1; \
	if [ -n "$$cmd" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing the system libraries Qt's window needs: $$cmd"; \
	    sh -c "$$cmd" >/dev/null || { command -v apt-get >/dev/null && apt-get update -qq && sh -c "$$cmd" >/dev/null; } || exit 1; \
	  else \
	    echo "GRU Viewer's window needs system libraries that are missing here. Install them, then run make run again:"; \
	    echo "    $$cmd"; exit 1; \
	  fi; \
	fi

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

test-slow: $(STAMP) desktop-libs
	$(PY) -c "import PyInstaller" 2>/dev/null || $(PY) -m pip install --quiet "pyinstaller>=6.10"
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) -m viewer bench

# A one-folder desktop bundle in dist/gru-viewer (PyInstaller), checked by its own --self-test.
package: $(STAMP) desktop-libs
	$(PY) -c "import PyInstaller" 2>/dev/null || $(PY) -m pip install --quiet "pyinstaller>=6.10"
	$(PY) -m PyInstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller packaging/gru-viewer.spec
	dist/gru-viewer/gru-viewer --self-test
	@du -sh dist/gru-viewer

lint: $(STAMP)
	$(VENV)/bin/ruff check viewer tests
	$(VENV)/bin/ruff format --check viewer tests
	$(VENV)/bin/lint-imports
	$(PY) tools/docstring_coverage.py --min 80 viewer/dicom viewer/ui viewer/pacs

clean:
	rm -rf $(VENV) $(DEMO) build dist .pytest_cache
