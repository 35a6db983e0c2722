"""Radiance fields: encodings, fields, samplers, volume rendering, models, trainer and metrics.

:mod:`nerfpipe.nerf.models` is the interface every model implements and the registry that names them.
"""
