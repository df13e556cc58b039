"""Developer tools, not part of the wheel: benchmark, load generator, soak test, and the corpus
authoring tools (``corpus_import``, ``second_labels``, ``compare_bundles``; see data/README.md).

``python -m tools.bench`` / ``make bench``, ``python -m tools.soak`` / ``make soak``. Their extra
dependencies (psutil, httpx) are the ``bench`` extra. May import anything (``service``, ``model``,
``training`` for the torch baseline); nothing in ``service/``, ``model/`` or ``training/`` imports them.
"""
