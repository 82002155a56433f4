"""Run focus-validator 1.0.0 on a file and print its verdict as JSON; exit 1 when a check fails.

Runs in the validator's own environment (tests/focus/requirements.txt), never the project's. Usage:
``validate.py DATA_FILE OVERRIDES_FILE``. The validator's CLI exits 0 even when checks fail, and its currency
list is read from a path relative to the working directory: this calls its API and points that path at the
installed file.
"""

from __future__ import annotations

import importlib.resources
import json
import sys

import focus_validator.utils.download_currency_codes as currency_codes

currency_codes.CURRENCY_CODE_CSV_PATH = str(importlib.resources.files("focus_validator.utils") / "currency_codes.csv")

from focus_validator.config_objects import ChecklistObjectStatus  # noqa: E402  (after the path is fixed)
from focus_validator.validator import Validator  # noqa: E402


def main(data_file: str, overrides: str) -> int:
    validator = Validator(data_filename=data_file, output_destination=None, output_type="console",
                          rules_version="1.0", override_filename=overrides, column_namespace=None)
    validator.load()
    result = validator.spec_rules.validate(validator.focus_data)
    statuses: dict[str, str] = {check: item.status.value for check, item in result.checklist.items()}
    failed = sorted(check for check, item in result.checklist.items()
                    if item.status in (ChecklistObjectStatus.FAILED, ChecklistObjectStatus.ERRORED))
    cases = [] if result.failure_cases is None else result.failure_cases.head(50).astype(str).to_dict("records")
    print(json.dumps({"statuses": statuses, "failed": failed, "failure_cases": cases}))
    return 1 if failed or cases else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
