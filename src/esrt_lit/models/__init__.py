"""Networks: ESRT and the MATLAB-bicubic baseline."""

from esrt_lit.models.esrt import ESRT

__all__ = ["ESRT", "Bicubic"]


def __getattr__(name: str):  # Bicubic pulls in the resizer; keep `import esrt_lit.models` light.
    if name == "Bicubic":
        from esrt_lit.models.bicubic import Bicubic

        return Bicubic
    raise AttributeError(f"module 'esrt_lit.models' has no attribute {name!r}")
