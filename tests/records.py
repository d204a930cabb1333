"""Hand-built catalog records for tests (no __init__.py in tests/: import as ``from records import ...``)."""
import numpy as np

from datagen.schema import Instance


def rect_instance(hw, iid, category, x0, y0, x1, y1, *, mask=True, **attributes):
    """Instance with an exact rectangular ``HxW bool`` mask over an image of size ``hw=(H, W)``
    (``mask=False``: box only); ``attributes`` are ground truth such as ``color`` or ``in_mirror``."""
    m = None
    if mask:
        m = np.zeros(hw, bool)
        m[y0:y1, x0:x1] = True
    return Instance(iid, category, (float(x0), float(y0), float(x1), float(y1)), m, attributes)
