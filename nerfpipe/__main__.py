"""``python -m nerfpipe``: the same command as ``nerfpipe``."""

from nerfpipe.cli import main

main()
