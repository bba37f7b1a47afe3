"""Seeded ids with Whop's prefixes, and ASCII folding for usernames, emails and routes."""

from __future__ import annotations

import base64
import functools
import random
import unicodedata

from whop_pipeline.sandbox.dataset import DAY_MS

# Base64 of random bytes, with its two non-alphanumeric symbols mapped onto letters: ids look like
# Whop's (14 alphanumeric characters) and cost one C call each instead of a Python loop.
_ALNUM = bytes.maketrans(b"+/", b"xQ")
# Letters that NFKD does not decompose into an ASCII base letter.
FOLD = str.maketrans(
    {"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "ß": "ss", "æ": "ae", "ı": "i", "đ": "d"}
)


class Ids:
    """Random-looking, seeded, unique ids with the real prefixes (14 alphanumeric characters)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.seen: set[str] = set()

    def new(self, prefix: str) -> str:
        while True:
            raw = base64.b64encode(self.rng.getrandbits(88).to_bytes(11, "big"))
            ident = prefix + raw[:14].translate(_ALNUM).decode()
            if ident not in self.seen:
                self.seen.add(ident)
                return ident


@functools.lru_cache(maxsize=4096)
def ascii_slug(text: str, sep: str = "") -> str:
    """``"Zoë Ångström"`` → ``"zoeangstrom"`` (or ``"zoe-angstrom"`` with ``sep="-"``)."""
    text = text.translate(FOLD)
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return sep.join("".join(ch if ch.isalnum() else " " for ch in folded).split())


__all__ = ["DAY_MS", "Ids", "ascii_slug"]
