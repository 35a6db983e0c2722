"""nerfpipe: from a folder of phone photos to a Neural Radiance Field and a fly-through video."""

__version__ = "0.1.0"
