"""madlib: the reproducible companion to MAD, SIMS, CASD and ReDiFine.

Subpackages are imported on demand so that ``import madlib.theory`` needs only numpy and scipy:
``theory`` (closed forms, simulators), ``models`` (model families), ``loops`` (the loop engine),
``plotting`` (figure style), ``figures`` (the papermill figure runner and claim records).
"""

__version__ = "0.1.0"
