"""``avaforge validate``: read a dataset the way mmaction2 will and report every problem."""

from avaforge.validation.dataset import ValidationReport, validate_dataset

__all__ = ["ValidationReport", "validate_dataset"]
