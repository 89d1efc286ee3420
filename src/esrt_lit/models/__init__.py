"""Networks: ESRT and the MATLAB-bicubic baseline."""

from esrt_lit._lazy import lazy_getattr
from esrt_lit.models.esrt import ESRT

__all__ = ["ESRT", "Bicubic"]

# Bicubic pulls in the resizer; keep `import esrt_lit.models` light.
__getattr__ = lazy_getattr(__name__, {"Bicubic": "esrt_lit.models.bicubic"})
