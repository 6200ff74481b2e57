"""`label`, `verify` and `diff` fit the label model `[label_model]` of mteach.toml names, as
`train` does (issue 11): kind, prior_strength and max_iter."""
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "youtube_spam.mt"
TRAIN = ROOT / "data" / "youtube" / "train.csv"


def _run_facts(ledger):
    return json.loads(pq.read_schema(ledger).metadata[b"mteach.run"])


def test_label_and_verify_use_the_label_model_of_mteach_toml(tmp_path, run):
    config = tmp_path / "mteach.toml"
    config.write_text('[label_model]\nkind = "majority_vote"\n')
    ledger = tmp_path / "mv.parquet"
    code, _, err = run("label", SPEC, TRAIN, "-o", ledger, "--id", "COMMENT_ID", "--config", config, "-q")
    assert code == 0, err
    assert _run_facts(ledger)["settings"]["label_model"]["class"] == "MajorityVote"
    # verify re-fits the label model the ledger records, so the ledger is reproduced exactly
    code, out, err = run("verify", ledger, TRAIN, "--spec", SPEC)
    assert code == 0 and "identical" in out, out + err

    config.write_text("[label_model]\nprior_strength = 2.5\nmax_iter = 7\n")
    strong = tmp_path / "weak_prior.parquet"
    assert run("label", SPEC, TRAIN, "-o", strong, "--id", "COMMENT_ID", "--config", config, "-q")[0] == 0
    params = _run_facts(strong)["settings"]["label_model"]["params"]
    assert params["prior_strength"] == 2.5 and params["max_iter"] == 7
    code, out, err = run("verify", strong, TRAIN, "--spec", SPEC)
    assert code == 0 and "identical" in out, out + err
    plain = tmp_path / "default.parquet"
    assert run("label", SPEC, TRAIN, "-o", plain, "--id", "COMMENT_ID", "-q", "--config", tmp_path / "none.toml")[0] == 2
    (tmp_path / "empty.toml").write_text("")
    assert run("label", SPEC, TRAIN, "-o", plain, "--id", "COMMENT_ID", "-q", "--config", tmp_path / "empty.toml")[0] == 0
    assert not np.allclose(pq.read_table(plain).column("probability").to_numpy(zero_copy_only=False),
                           pq.read_table(strong).column("probability").to_numpy(zero_copy_only=False),
                           equal_nan=True)


def test_diff_labels_with_the_configured_label_model():
    from mteach.compiler.checker import load_spec
    from mteach.engine.diff import _labels_of
    from mteach.engine.label_model import MajorityVote
    from mteach.engine.votes import collect_votes
    from mteach.settings import LabelModelSettings
    spec = load_spec(SPEC)
    votes = collect_votes(spec, TRAIN).votes
    labels = _labels_of(spec, votes, 0, LabelModelSettings(kind="majority_vote"))
    covered = (votes != -1).any(axis=1)
    assert np.array_equal(labels[covered], MajorityVote(n_classes=2).fit(votes).predict(votes)[covered])
    assert (labels[~covered] == -1).all()


def test_the_studio_shows_the_contributions_of_the_configured_label_model(tmp_path, monkeypatch):
    from mteach.compiler.checker import load_spec
    from mteach.engine.label_model import fit_for_spec
    from mteach.engine.votes import collect_votes
    from mteach.tui.session import label_model_contributions
    spec = load_spec(SPEC)
    votes = collect_votes(spec, TRAIN).votes
    monkeypatch.chdir(tmp_path)
    default = label_model_contributions(spec, votes)
    (tmp_path / "mteach.toml").write_text('[label_model]\nkind = "majority_vote"\n')
    shown = label_model_contributions(spec, votes)
    assert np.array_equal(shown, fit_for_spec(spec, votes, kind="majority_vote").contributions(votes))
    assert not np.allclose(shown, default)
    (tmp_path / "mteach.toml").write_text('[label_model]\nkind = "nonsense"\n')
    assert label_model_contributions(spec, votes) is None  # the Model pane names the error
