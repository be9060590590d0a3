# Two entry points for a new user: `make demo` and `make test` (see README.md).
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# On machines where these wheels lie on disk, installing the pair first stops pip looking further.
TORCH  ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test venv install clean

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)

$(VENV)/.installed-test: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q -e '.[test]'
	touch $@

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q -e .
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/convlens layers --model builtin:tiny

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
