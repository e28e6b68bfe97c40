"""Errors a user can act on. Stage scripts print their message and exit non-zero, without a traceback."""

from pathlib import Path


class BirdplaneError(Exception):
    """Base of all errors whose message names the problem and the fix."""


class DamagedFile(BirdplaneError):
    """A file that a stage reads is damaged: `problem` says how, `fix` what to do in plain words.
    The stages' error line replaces `fix` with the exact commands where the file is a DVC output
    (birdplane.process.run_stage, birdplane.dvc_hints): the cache holds the damaged copy too."""

    def __init__(self, path: Path | str, problem: str, fix: str):
        self.path, self.problem, self.fix = Path(path), problem, fix
        super().__init__(f"{problem}: {fix}")

    def with_fix(self, fix: str) -> str:
        return f"{self.problem}: {fix}"
