"""Benchmarks of vcti-file-cache against its peers and the machine's limits.

Run ``python -m benchmarks`` (or ``python benchmarks/run.py``) from the repository root;
``--help`` lists the options. See benchmarks/README.md.
"""
