"""Popular items overall or recently (time-decayed), optionally under hard conditions."""

from __future__ import annotations

from typing import Any

import numpy as np

from catalog.constraints import Constraints
from catalog.stores import Stores


def popular_items(stores: Stores, limit: int = 10, recent: bool = False,
                  constraints: Constraints | None = None) -> list[dict[str, Any]]:
    mask = (constraints or Constraints()).mask(stores)
    idx = np.flatnonzero(mask)
    values = stores.trend[idx] if recent else stores.popularity[idx].astype(float)
    order = np.lexsort((idx, -values))[:limit]
    return [stores.item_record(int(i)) for i in idx[order]]
