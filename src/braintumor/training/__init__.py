"""Training: the Lightning module and data module, optimisers, augmentation, the trainer and a
whole run (splits, fit, model folder, test evaluation)."""
