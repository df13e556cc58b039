"""The batch job (``complaint-triage score``): frozen job config, readers/writers, part store, Ray engine.

May import: ``service.contract``, ``service.errors``, ``model/``, pyarrow, tqdm, and Ray (only in
``ray_engine``, lazily). Never ``service.api`` or ``training``.
"""
