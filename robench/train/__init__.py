"""Training: the TF-semantics RMSProp optimizer, learning-rate schedules and the training loop."""
