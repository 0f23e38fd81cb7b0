# vidlang — the two commands: `make demo` and `make test` (both build .venv when it is missing).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-all bench venv sysdeps clean

venv: $(STAMP)

# torchcodec needs the system FFmpeg shared libraries; install them when missing and we are root.
sysdeps:
	@if ! ldconfig -p 2>/dev/null | grep -q 'libavcodec\.so'; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system FFmpeg libraries for torchcodec"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null) \
	      || echo "warning: could not install ffmpeg; the torchcodec decoder will be unavailable"; \
	  else echo "warning: FFmpeg libraries missing; the torchcodec decoder will be unavailable"; fi; \
	fi

# The venv takes ~6.6 GB (torch 2.14.1 is a CUDA build, the only one with a torchvision that loads here);
# say so up front instead of leaving pip's "No space left on device" mid-install as the only clue.
VENV_GB := 7

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory sysdeps
	@free_kb=$$(df -Pk . | awk 'NR==2 {print $$4}'); \
	  if [ -n "$$free_kb" ] && [ "$$free_kb" -lt $$(( $(VENV_GB) * 1024 * 1024 )) ]; then \
	    echo "warning: $$(( free_kb / 1024 )) MiB free here; building $(VENV) needs about $(VENV_GB) GB"; fi
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev,distributed]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vidlang demo --out runs/demo

test: $(STAMP)
	$(VPY) -m pytest -q tests

test-all: $(STAMP)
	$(VPY) -m pytest -q -m '' tests

bench: $(STAMP)
	$(VPY) tools/bench_preprocess.py
	$(VPY) tools/bench_norton.py

clean:
	rm -rf $(VENV) runs build *.egg-info
