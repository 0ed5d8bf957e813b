"""Masking credentials in URLs before they are logged, stored or shown.

Cattle accepts its API keys in the URL (``http://ACCESS:SECRET@rancher:8080/v2-beta``), so a
``CATTLE_URL`` may carry a secret. Whatever shows or keeps a URL the user gave — the settings log
line, the endpoint label in the store, ``status`` — passes it through ``mask_url`` first.

The URL is masked as text rather than parsed and rebuilt: parsing would normalise it (drop an
empty query, re-encode values), and a string that is not a URL at all (``sandbox``, a label around
a URL) must come back unchanged rather than fail.
"""

from __future__ import annotations

import re
from typing import Final

MASK: Final = "****"

# scheme://userinfo@ — userinfo ends at the last "@" before the host's end ("/", "?", "#").
_USERINFO: Final = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s]*)@")
# name=value in a query; names that hold secrets by their look.
_QUERY_PARAM: Final = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&;#\s]*)=(?P<value>[^&;#\s]*)")
_SECRET_NAME: Final = re.compile(r"key|token|secret|passw|pwd|credential|signature|auth", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` with the user and password replaced by ``****`` (scheme, host, port and path kept),
    and the values of query parameters named like a secret (``key``, ``access_key``, ``token``,
    ``secret``, ``password``...) too. Text that holds no such part comes back unchanged."""
    return _QUERY_PARAM.sub(_mask_param, _USERINFO.sub(_mask_userinfo, url))


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _password = match["userinfo"].partition(":")
    masked = (MASK if user else "") + (f":{MASK}" if colon else "")
    return f"{match['scheme']}{masked}@"


def _mask_param(match: re.Match[str]) -> str:
    if not _SECRET_NAME.search(match["name"]) or not match["value"]:
        return match[0]
    return f"{match['sep']}{match['name']}={MASK}"
