"""Evaluation: result storage, white-box and black-box attack runners, experiments."""
