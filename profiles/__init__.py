"""What the simulator needs about an engine: cost models and acceptance models (DESIGN §2)."""

from profiles.cost import CostModel
from profiles.curve import Curve
from profiles.errors import InputError

__all__ = ["CostModel", "Curve", "InputError"]
