"""The Python API takes a pyarrow Table, a pandas DataFrame or a polars DataFrame, through one coercion."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import mteach

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "youtube_spam.mt"


@pytest.fixture(scope="module")
def comments() -> pa.Table:
    return pacsv.read_csv(ROOT / "data" / "youtube" / "train.csv")


def frames(table: pa.Table):
    """The same data as each library the API accepts (skipping one that is not installed)."""
    yield "pyarrow", table
    yield "pyarrow batch", table.combine_chunks().to_batches()[0]
    for name in ("pandas", "polars"):
        try:
            lib = __import__(name)
        except ImportError:
            continue
        yield name, (lib.DataFrame(table.to_pandas()) if name == "pandas" else lib.from_arrow(table))


def test_apply_table_gives_the_same_votes_for_every_kind_of_frame(comments):
    spec = mteach.load_spec(SPEC)
    expected = mteach.apply_table(spec, comments)
    assert (expected != -1).any()
    seen = []
    for name, frame in frames(comments):
        np.testing.assert_array_equal(mteach.apply_table(spec, frame), expected, err_msg=name)
        seen.append(name)
    assert "pandas" in seen  # pandas comes with mteach[dev]; polars is skipped where it cannot install


def test_as_table_keeps_columns_and_types_and_refuses_other_objects(comments):
    for name, frame in frames(comments.select(["COMMENT_ID", "CONTENT", "CLASS"])):
        t = mteach.as_table(frame)
        assert t.column_names == ["COMMENT_ID", "CONTENT", "CLASS"], name
        assert t.column("CONTENT").to_pylist() == comments.column("CONTENT").to_pylist(), name
        assert pa.types.is_integer(t.schema.field("CLASS").type), name
    with pytest.raises(mteach.DataError, match="not builtins.list"):
        mteach.as_table([{"CONTENT": "hi"}])


def test_train_predict_label_take_data_frames(tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    size = rng.uniform(0, 30, 400)
    df = pd.DataFrame({"id": [f"r{i}" for i in range(400)], "size": size})
    spec_path = tmp_path / "size.mt"
    spec_path.write_text('concept c "big things"\nlabels BIG, SMALL\nfield size = "size"\n'
                         "rule big : size > 20 => BIG\nrule small : size < 10 => SMALL\n")
    spec = mteach.load_spec(spec_path)
    model, report = mteach.train(spec, df)
    out = mteach.predict(model, df.iloc[:50])
    assert out["proba"].shape == (50, 2)
    labels = np.array(spec.labels)[out["label"]]
    assert (labels[size[:50] > 22] == "BIG").all() and (labels[size[:50] < 8] == "SMALL").all()
    assert set(out["decided_by"][(size[:50] > 10) & (size[:50] < 20)]) == {"end_model"}

    pl = pytest.importorskip("polars")
    ledger = mteach.label(spec, pl.from_pandas(df), id_column="id", model=model)
    assert ledger.table.num_rows == 400
    assert ledger.table.column("id").to_pylist()[:2] == ["r0", "r1"]
    with pytest.raises(mteach.DataError, match="no id column 'ID'"):
        mteach.label(spec, df, id_column="ID")


def test_import_mteach_is_light():
    code = ("import sys, mteach\n"
            "heavy = [m for m in ('torch', 'sklearn', 'scipy', 'textual', 'pandas', 'polars') if m in sys.modules]\n"
            "print(heavy)\n"
            "mteach.LabelModel\n"
            "print('sklearn' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "True"]
