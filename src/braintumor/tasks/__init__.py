"""Tasks by name (classification, 2D segmentation, BraTS 2D / 3D).

:mod:`.catalog` holds the registrations (names, implementations, recipe options), which
:mod:`braintumor.config` reads; :mod:`.registry` holds the :class:`~.registry.Task` protocol
and resolves names to tasks. Nothing is imported here, so that reading a recipe imports
neither the protocol nor any task.
"""
