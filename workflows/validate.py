"""``python -m workflows validate FILE``: check a case-level extract and print the report.

Writes nothing (not even a salt file): it is safe to run on a confidential extract
anywhere.  Exit code 2 when the extract has errors, 0 when it has none (warnings allowed).
"""

from __future__ import annotations

import argparse

from models.pseudonymise import read_salt
from models.validation import check_extract
from public_data.tables import load_lsoa_table
from workflows.errors import UserError
from workflows.extract_io import read_extract_raw


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the extract (.csv, .csv.gz or .parquet)")
    parser.add_argument("--max-per-rule", type=int, default=50, metavar="N",
                        help="print at most N issues per rule (all are counted; default 50)")
    parser.add_argument("--salt-file", default=None, metavar="P",
                        help="check that this pseudonymisation salt file is readable "
                             "(it is never created by validate)")


def run(args: argparse.Namespace) -> int:
    if args.max_per_rule < 0:
        raise UserError("--max-per-rule must be 0 or more")
    if args.salt_file is not None:
        try:
            read_salt(args.salt_file)
        except (OSError, ValueError) as err:
            raise UserError(f"salt file {args.salt_file}: {err}") from None
    # The raw frame is handed over, not kept: it is freed once parsed (peak memory).
    report = check_extract(read_extract_raw(args.file), load_lsoa_table(), source=str(args.file))[0]
    print(report.format(max_per_rule=args.max_per_rule))
    if args.salt_file is not None:
        print(f"salt file {args.salt_file}: readable")
    return 0 if report.ok else 2
