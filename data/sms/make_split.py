"""Rebuild train.csv and test.csv from the UCI SMS Spam Collection (see SOURCES.md).

    python data/sms/make_split.py /work/shared/data/sms_uci/SMSSpamCollection

Seeded (numpy default_rng(0)) permutation of the 5,574 messages; the first 70% are the
training split, the rest the test split, each in file order of the permutation.
"""
import csv
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

HERE = Path(__file__).resolve().parent


def main(source: str) -> None:
    with open(source, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert len(rows) == 5574 and all(len(r) == 2 for r in rows), "not the 5,574-line UCI file"
    order = np.random.default_rng(0).permutation(len(rows))
    cut = int(0.7 * len(rows))
    for name, part in (("train.csv", order[:cut]), ("test.csv", order[cut:])):
        table = pa.table({"id": [f"sms{i:04d}" for i in part],
                          "label": [rows[i][0] for i in part],
                          "text": [rows[i][1] for i in part]})
        pacsv.write_csv(table, HERE / name)


if __name__ == "__main__":
    main(sys.argv[1])
