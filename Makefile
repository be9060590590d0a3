# Two entry points for a new user: `make demo` and `make test` (see README.md); `make check` is
# the inner loop while developing: the same lints, and the tests not marked slow or peer.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# On machines where these wheels lie on disk, installing the pair first stops pip looking further.
TORCH  ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test check lint venv install clean data zoo bench

# Fashion-MNIST and Tux Paint's photo stamps (builtin:stamps) from Debian's packages, where apt
# exists and we may use it; otherwise a hint.
data:
	@need=""; \
	if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] && [ -z "$$CONVLENS_DATA" ]; then need="dataset-fashion-mnist"; fi; \
	if [ ! -d /usr/share/tuxpaint/stamps/animals ] && [ -z "$$CONVLENS_STAMPS" ]; then need="$$need tuxpaint-stamps-default"; fi; \
	if [ -z "$$need" ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$need; \
	else need="$${need# }"; echo "note: not found: $$need (apt-get install $$need, or set CONVLENS_DATA / CONVLENS_STAMPS; tests that need them are skipped)"; fi

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)

$(VENV)/.installed-test: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q -e '.[test,ray]'
	$(PIP) install -q --no-deps "torchattacks==3.5.1"  # the attacks' peer; see pyproject.toml
	$(PIP) install -q --no-deps "quantus==0.6.0"  # faithfulness's peer; see pyproject.toml
	touch $@

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q -e .
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed data
	$(VENV)/bin/convlens demo --out convlens-demo

lint: $(VENV)/.installed-test
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff check src tests benchmarks docs scripts

# Everything: what CI runs (.ci/run): the tests, then every benchmark row at toy sizes (fails if
# any row's outputs differ from its peer's beyond the row's tolerance).
test: lint data
	$(PY) -m pytest -q
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench.py --smoke --out $${TMPDIR:-/tmp}/convlens-bench-smoke

# Every speed claim of BENCHMARKS.md against its baseline or peer, in one run (benchmarks/bench.py):
# `make bench` on the CPU, `make bench BENCH="--device cuda"` on a GPU; tables in benchmarks/results/.
bench: $(VENV)/.installed-test data
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench.py $(BENCH)

# The inner loop: every family, without the tests marked slow (a second or more) or peer.
check: lint data
	$(PY) -m pytest -q -m "not slow and not peer"

# The zoo sweep alone (also part of `make test`): every torchvision classifier up to 150 M
# parameters and 8 timm CNNs through every view (tests/test_zoo.py).
zoo: lint data
	$(PY) -m pytest -q tests/test_zoo.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
