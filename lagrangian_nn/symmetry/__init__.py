"""Automatic discovery of a network's continuous symmetries and their conservation laws."""

from ._count import (
    LawCount as LawCount,
    LawCountError as LawCountError,
    count_laws as count_laws,
)
from ._count_models import model_phi as model_phi
from ._discover import (
    CertificationError as CertificationError,
    Discovery as Discovery,
    DiscoveryError as DiscoveryError,
    discover as discover,
)
from ._families import (
    Family as Family,
    custom_family as custom_family,
    gl_family as gl_family,
    rescaling_family as rescaling_family,
    rotation_family as rotation_family,
)
from ._table import (
    ConservationTable as ConservationTable,
    Law as Law,
    conservation_table as conservation_table,
    is_gradient_field as is_gradient_field,
)
