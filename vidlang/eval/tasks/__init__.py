"""The evaluation tasks shipped with vidlang; importing this package registers them (vidlang.eval.registry).

Each task module holds a `run_*` protocol (readers + a feature store + the model's evaluator -> the metric
functions of vidlang.eval -> a result dict {"metrics", "baselines", "counts", "protocol"}; numbers are percent
unless the key says otherwise, ranks are 1-based) and the registered wrapper that reads its settings from the
EvalConfig. Where a protocol differs from the reference code on purpose, its module docstring says so.
"""

from vidlang.eval.tasks import alignment, localization, retrieval, segmentation, videoqa  # noqa: F401
# tasks needing the `generate` / `score` capabilities (language models), after the `embed` ones
from vidlang.eval.tasks import captioning, qa  # noqa: F401,E402
