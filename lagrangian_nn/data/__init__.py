"""Datasets: KMNIST from its official files, and an offline default (digits)."""

from ._digits import digits as digits
from ._kmnist import kmnist as kmnist
