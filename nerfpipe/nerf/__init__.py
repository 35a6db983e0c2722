"""Radiance fields: encodings, fields, samplers, volume rendering, models, trainer and metrics.

:mod:`nerfpipe.nerf.interface` is the interface every model implements, :mod:`nerfpipe.nerf.registry`
names them, :mod:`nerfpipe.nerf.chunking` renders many rays in chunks.
"""
