"""JSON request bodies: parsed the same way, with the same refusals, by the pages and the API."""
from __future__ import annotations

import json
from typing import Any

TOO_DEEP = "The JSON body is nested too deeply."


def json_parse(*, data: bytes | str, **options) -> Any:
    """``json.loads`` that raises ``ValueError`` (a 400), never ``RecursionError`` (a 500), for deep nesting.

    ``json.JSONDecodeError`` is a ``ValueError`` too; ``options`` go to ``json.loads``.
    """
    try:
        return json.loads(data, **options)
    except RecursionError:
        raise ValueError(TOO_DEEP) from None
