"""Storage URLs as they may be shown: in error messages, reprs and logs.

A storage URL may carry a password (``postgresql://app:s3cret@db/postflow``); whatever
postflow prints or raises shows :func:`redact_url` of it instead.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "redact_url"]

MASK = "***"
"""What a password is replaced with."""

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_SECRET_PARAM = re.compile(
    r"(?P<key>(?:^|[?&;])(?:password|passwd|pwd|secret|token)=)[^&;#]*", re.IGNORECASE
)


def redact_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``.

    ``scheme://user:pass@host/path`` becomes ``scheme://user:***@host/path``; so does a
    password with unencoded ``@`` or ``/`` in it (the user information ends at the last
    ``@`` of the authority, as :func:`urllib.parse.urlsplit` reads it). Query
    parameters named ``password``, ``passwd``, ``pwd``, ``secret`` or ``token`` are
    masked too. Anything that is not a ``scheme://`` URL comes back unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return url
    end = next((i for i, c in enumerate(rest) if c in "/?#"), len(rest))
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, host = netloc.rpartition("@")
    if not at and "@" in tail and ":" in netloc and not netloc.partition(":")[2].isdigit():
        # "user:pa/ss@host": a password with a '/', '?' or '#' the writer did not encode
        userinfo, _, after = rest.partition("@")
        end = next((i for i, c in enumerate(after) if c in "/?#"), len(after))
        at, host, tail = "@", after[:end], after[end:]
    if at:
        user, colon, password = userinfo.partition(":")
        if colon and password:
            userinfo = f"{user}:{MASK}"
        netloc = f"{userinfo}@{host}"
    path, qmark, query = tail.partition("?")
    if qmark:
        tail = path + qmark + _SECRET_PARAM.sub(rf"\g<key>{MASK}", query)
    return f"{scheme}://{netloc}{tail}"
