# One command each: `make demo` (set up and run the main job), `make test` (set up and pass the tests).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
DEMO_RUN := $(shell sed -n "s/^name: //p" options/train_moesr.yml)

.PHONY: venv demo demo-edsr demo-data test test-all bench gpu-check check-docs clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip 'setuptools>=77' wheel cython numpy
	# torch first (basicsr's build imports it); these versions install from local files here
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q --no-build-isolation basicsr==1.4.2
	$(PIP) install -q --no-build-isolation -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo-data: $(STAMP)
	$(PY) scripts/data_preparation/make_demo_dataset.py

demo: demo-data
	$(VENV)/bin/basicsr train -opt options/train_moesr.yml
	$(VENV)/bin/basicsr train-gate --dataset datasets/demo --lr-scale 2 --epochs 40 --repeat 8 --imgsz 256 --output experiments/gate_demo
	$(VENV)/bin/basicsr test -opt options/test_moesr.yml
	@echo "Pictures (blend, background expert alone, gate overlay, specialisation heat map): experiments/$(DEMO_RUN)/visualization/ (label gate)  results/$(DEMO_RUN)/visualization/demo_val/ (YOLO gate)"
	@echo "Logs: experiments/$(DEMO_RUN)/train_*.log  results/$(DEMO_RUN)/test_*.log"
	@echo; echo "MoE-SR against its equal-budget single network and bicubic (label gate; validation photos, then photos no recipe trains on):"
	@cat experiments/$(DEMO_RUN)/comparison_demo_val.txt experiments/$(DEMO_RUN)/comparison_demo_heldout.txt
	@echo; echo "A held-out photo (no recipe trains on it) upscaled x2 by the SeemoRe-T shipped in moesr_arch/weights:"
	$(VENV)/bin/basicsr infer -i datasets/demo/heldout/LR_bicubic/X2/china_pagoda.png -o results/demo_photo --suffix x2
	@echo "Picture: results/demo_photo/china_pagoda_x2.png (the original: datasets/demo/heldout/HR/china_pagoda.png)"

demo-edsr: demo-data
	$(VENV)/bin/basicsr train -opt options/train_edsr_demo.yml
	$(VENV)/bin/basicsr test -opt options/test_edsr_demo.yml
	@echo "Pictures: results/demo_EDSR_x2_f32b4/visualization/  Logs: experiments/demo_EDSR_x2_f32b4/"

# One pytest worker per core (pytest-xdist), each with one torch thread; the 15 slowest tests listed at the end.
TEST_RUN := OMP_NUM_THREADS=1 $(PY) -m pytest -q -n auto --durations=15

test: $(STAMP)
	$(TEST_RUN) -m "not slow and not gpu" tests

test-all: $(STAMP)
	$(TEST_RUN) tests

bench: $(STAMP)
	$(PY) scripts/benchmark.py --output docs/benchmarks.md

# Every command of the README and the docs, as written, in a fresh clone after make demo (standard library
# only, no venv needed here); ARGS adds options, e.g. ARGS="--skip '^make test' --only docs/tools.md".
check-docs:
	python3 scripts/check_doc_commands.py $(ARGS)

# On one GPU, in under 8 minutes; no venv needed (a bare GPU machine installs the wheels in .whl/).
gpu-check:
	bash scripts/gpu_check.sh

clean:
	rm -rf $(VENV) experiments results tb_logger
