"""The one error type that stages raise for a user's mistake.

A stage raises :class:`NerfpipeError` with one plain sentence naming the file or the number and
what to do; only ``cli.py`` turns it into a message and an exit code. Anything else that escapes is a
bug in nerfpipe and keeps its traceback.
"""


class NerfpipeError(Exception):
    """A failure the user can act on, carrying one plain sentence."""

    def __init__(self, sentence: str, exit_code: int = 1):
        super().__init__(sentence)
        self.sentence = sentence
        self.exit_code = exit_code
