"""Reading a checkpoint in-process: ``criu-cr inspect``, ``inspect memory`` and ``diff``.

Modules, one concern each: :mod:`sources` (SOURCE -> the checkpoint's files),
:mod:`ourmeta` (criu-cr's and podman's metadata beside CRIU's images),
:mod:`model` (the inspected checkpoint as frozen dataclasses), :mod:`collect`
(CRIU's images -> the model), :mod:`render` (the text tree), :mod:`jsondoc`
(the JSON document, docs/inspect.md), :mod:`memsearch` (strings and hex in a
process's memory), :mod:`diff` (two checkpoints compared).
"""
