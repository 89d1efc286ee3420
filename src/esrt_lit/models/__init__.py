"""Networks: ESRT and the MATLAB-bicubic baseline."""

from esrt_lit.models.bicubic import Bicubic
from esrt_lit.models.esrt import ESRT

__all__ = ["ESRT", "Bicubic"]
