"""theater's benchmark suite: ``python -m benchmarks.run [--quick] [--only N,...] [--json-out PATH]``.

One module per target of the performance issue (``b1_cli`` ... ``b8_chain``).
Each exposes ``run(quick: bool) -> list[Figure]`` and measures its baseline in
the same run, so the ratio means something on a noisy machine.
"""
