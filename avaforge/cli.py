"""``avaforge`` command line: thin argument parsing over the library; no stage logic lives here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_validate(args: argparse.Namespace) -> int:
    from avaforge.validation import validate_dataset

    report = validate_dataset(args.dataset, config=args.config)
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avaforge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check an AVA dataset the way mmaction2 will read it")
    p.add_argument("dataset", help="dataset root (with annotations/ and rawframes/)")
    p.add_argument("--config", help="an mmaction2 config to check against the dataset")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
