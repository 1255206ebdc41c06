"""robench's speed benchmarks: the attack matrix against torchattacks and ART, training
throughput against a plain PyTorch loop, and the 1-to-N loss against cross entropy.

Run ``python3 -m benchmarks [attacks|train|loss|all] --out FILE.json`` from the
repository root (``--quick`` for tiny sizes, ``--help`` for the options); see
``benchmarks/README.md`` for what each figure means. Not part of the installed package.
"""
