"""The optional dependencies ("extras") and the one line that names the extra to install.

The core library and the N-th farthest, Learning to Execute and language-model tasks need only
torch, numpy and tqdm. Mini Pac-Man needs gymnasium (its environment API) and pillow (`rrnn
play`'s GIFs): the `[rl]` extra; pictures (`rrnn report`, `rrnn inspect`) need matplotlib: the
`[plots]` extra; `[all]` is both. The modules import these where they are used, so a missing
one surfaces as a ModuleNotFoundError, which `missing_extra` turns into a MissingExtraError
naming the extra.
"""

from __future__ import annotations

from typing import Optional

EXTRAS = {"gymnasium": "rl", "PIL": "rl", "matplotlib": "plots"}  # top-level module -> the extra that installs it
DISTRIBUTIONS = {"gymnasium": "gymnasium", "PIL": "pillow", "matplotlib": "matplotlib"}  # module -> what pip calls it


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says which extra installs it."""


def missing_extra(error: ImportError, feature: str = "this") -> Optional[MissingExtraError]:
    """The MissingExtraError for `error` if it is an optional dependency that failed to import, else None."""
    if isinstance(error, MissingExtraError):
        return error
    module = (getattr(error, "name", None) or "").split(".")[0]
    if not isinstance(error, ModuleNotFoundError) or module not in EXTRAS:
        return None
    message = (f"{feature} needs {DISTRIBUTIONS[module]}, which is not installed: "
               f"pip install 'relational-rnn[{EXTRAS[module]}]' (or [all])")
    return MissingExtraError(message, name=module)
