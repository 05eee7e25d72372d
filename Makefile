# Two commands set up everything on a fresh machine:
#   make demo   trains AlexNet on the embedded digits (about 2 minutes on 2 cores)
#   make test   runs the test suite
# Both create .venv from requirements.txt on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/digits

.PHONY: demo test summary clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $@

demo: $(VENV)/.installed
	$(PY) main.py --config=configs/digits.py --workdir=$(WORKDIR)

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

summary: $(VENV)/.installed
	$(PY) main.py --config=configs/ilsvrc2012.py --workdir=/tmp/alexnet_summary --mode=summary --host_device_count=2

clean:
	rm -rf $(VENV) runs
