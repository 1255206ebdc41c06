"""robench: benchmark how a classifier's training loss shapes its robustness.

Reproduces the system of "1-to-N Large Margin Classifier" (Rocca Layza, Pedrini,
da Silva Torres) as reusable software: a model zoo of matched models that differ only
in their loss, an attack engine (FGSM / IFGSM), the paper's generalization and
noisy-label experiments, and reports.
"""

__version__ = "0.1.0"
