"""Evaluation: metrics (pure functions, `Shapes:` docstrings), the task registry and the protocols.

Modules:
    retrieval.py     rank_metrics (R@K percent, MedR, MeanR; pessimistic ties; chunked), bidirectional_metrics
    paragraph.py     paragraph retrieval scores: caption average, DTW, OTAM (masked, log-domain soft-min), OT+bucket
    segmentation.py  segmentation_metrics: frame/step-only accuracy, MS-TCN edit and F1@{10,25,50}
    localization.py  CrossTask ordered step DP and per-task recall
    alignment.py     narration alignment: recall, ROC-AUC with ties, content+time aligners, OT aligner
    probe.py         linear/MLP probes on frozen per-second embeddings
    registry.py      the task registry: name -> (run, data keys, capability)
    capabilities.py  what tasks receive from a model (Embeds, RandomEmbedder), checkpoint loading, store checks
    config.py        EvalConfig and the per-task settings
    tasks/           one module per protocol (readers + a FeatureStore + the model's evaluator -> metrics)
    cli.py           `vidlang eval`;  report.py `vidlang report`;  plots.py `vidlang plot-alignment`
"""
