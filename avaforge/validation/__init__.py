"""``avaforge validate``: read a dataset the way mmaction2 will and report every problem.

Modules: dataset.py (the files), config.py (an mmaction2 config against them), report.py (what both share).
"""

from avaforge.validation.dataset import validate_dataset
from avaforge.validation.report import ValidationReport

__all__ = ["ValidationReport", "validate_dataset"]
