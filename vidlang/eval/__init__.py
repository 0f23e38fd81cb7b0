"""Evaluation: metrics (pure functions, `Shapes:` docstrings) and protocols on public annotation formats.

Modules:
    retrieval.py     rank_metrics (R@K percent, MedR, MeanR; pessimistic ties; chunked), bidirectional_metrics
    paragraph.py     paragraph retrieval scores: caption average, DTW, OTAM (masked, log-domain soft-min), OT+bucket
    segmentation.py  segmentation_metrics: frame/step-only accuracy, MS-TCN edit and F1@{10,25,50}
    localization.py  CrossTask ordered step DP and per-task recall
    alignment.py     narration alignment: recall, ROC-AUC with ties, content+time aligner, OT aligner
    tasks.py         run_* protocols gluing readers, a FeatureStore and an Embedder to the metrics
    cli.py           `vidlang eval`;  report.py `vidlang report`  (`vidlang align` is vidlang/data/realign.py)
    plots.py         `vidlang plot-alignment`
"""
