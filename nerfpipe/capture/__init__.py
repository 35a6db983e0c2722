"""Judging a capture from its photos and sparse model: the capture report's parts, apart from the stage.

``wording`` turns photo numbers into phrases, ``rules`` turns per-photo figures into problems and
their sentences, ``measurements`` measures photos and sparse models, ``figure`` draws the top-down
view. The report stage (:mod:`nerfpipe.stages.report`) reads the scene and writes the files.
"""
