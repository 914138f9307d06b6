"""A second, independently written family of synthetic head-CT phantoms, for cross-generator validation.

:func:`generate_other_study` returns the same :class:`~viewer.synth.study.PhantomStudy` as the first family
but draws its anatomy, bleeds and acquisition differently, so that a model that learnt only the first
family's look fails here.
"""

from viewer.synth.other.lesions import KINDS
from viewer.synth.other.study import generate_other_study

__all__ = ["KINDS", "generate_other_study"]
