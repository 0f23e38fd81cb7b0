"""Training: TrainConfig, the accelerate loop, objectives registry, optimiser/schedule, checkpoints."""
