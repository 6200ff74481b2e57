"""Do direction hints help? Held-out accuracy and F1, small-data regime, real data.

    python bench/hints_effect.py [--seeds 5] [--rows 200] [--data youtube,sms]
                                 [--strength S] [--margin M]

Protocol (issue 13, item 4), per data set and per seed 0..seeds-1:

- the spec's rules vote on the training split, the label model turns the votes
  into soft labels, and the end model is trained on ``--rows`` covered rows drawn
  at random (the seed picks them): the regime where a model most easily learns
  spurious words. The featurizer's vocabulary is fitted on all training texts
  (no labels), as ``mteach train`` does.
- four end models, same rows, same seed, same settings:
    none      no hints (features of the spec alone)
    features  the hints' measures added as features, no penalty
    hints     the same features plus the hint penalties
    control   the same features and hints, each hint pointing at a random label
- scored once on the test split (gold labels): accuracy, F1 of SPAM, and
  accuracy on the test rows no rule covers.

Hints were written as an expert would, reading training rows only (never the
test split): the words and measures that tell spam from a real message.

Figures (5 seeds, load 3 on 2 cores), test accuracy none / features / hints / control:
YouTube 91.6 / 93.6 / 93.8 / 88.4, SMS 90.8 / 94.9 / 95.3 / 90.9 (F1 of SPAM
74.8 / 84.0 / 85.1 / 75.1). The penalty costs nothing against the same features
on 9 seeds of 10 (SMS seed 3: -0.2 points).

What was tried to make the penalty stop costing accuracy (3 seeds unless said):
- margin (the slope asked for): 3 and 1 cost 2-3 points against "features" on both
  sets; 0.3 and 0.1 cost less. A margin says how much, and the data know that better
  than the expert: the default is now 0.1, "which way" only.
- shape: softplus with sharpness 5 keeps pushing well past the margin; a squared hinge
  at margin 1 did not help (-0.5 / -1.6); a hinge at 0.1 did (+1.1 on YouTube, -1.7 on
  SMS). The default is now softplus with sharpness 50, a smooth hinge.
- feature space: a token's direction used to include its character n-grams, shared with
  other words; leaving one hint out at a time on SMS showed `more "urgent" => SPAM`
  alone cost 1.2 points (" ur" is also SMS-speak for "your"). Directions of token and
  pair hints now live on word n-grams only: SMS went from -1.7 to -0.6 (3 seeds).
- leaving one hint out at a time again (SMS, 5 seeds): all of the remaining cost was
  the pair, whose gap f_L(B) - f_L(A) was still taken on the full rows; taking it on
  the word n-grams of both texts turned SMS from -1.0 to +0.3 (YouTube +0.3).
- which rows / where in the network: the default end model is linear, where the slope
  is the same on every row and there is one layer, so neither changes anything there.
Most hints then change nothing: the 200 rule-labelled rows already teach their
direction, and a "which way" penalty is silent when the data agree.

Data: the bundled YouTube split (data/youtube/train.csv, test.csv) with
specs/youtube_spam.mt's rules; the UCI SMS collection (shared file), split 80/20
by a fixed seeded permutation, with the rules in ``SMS_SPEC`` below.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mteach.compiler.checker import load_spec  # noqa: E402
from mteach.compiler.evaluator import vote_matrix  # noqa: E402
from mteach.engine.end_model import EndModel  # noqa: E402
from mteach.engine.features import Featurizer  # noqa: E402
from mteach.engine.hints import compile_hints  # noqa: E402
from mteach.engine.label_model import fit_for_spec  # noqa: E402
from mteach.engine.train import _feature_table, _spec_on_fields, measure_name, numeric_features  # noqa: E402
from mteach.settings import Settings  # noqa: E402

SMS_FILE = Path("/work/shared/data/sms_uci/SMSSpamCollection")
SMS_SPLIT_SEED = 13

YOUTUBE_HINTS = """
hint more "subscribe" => SPAM
hint more "channel" => SPAM
hint more "check" => SPAM
hint more "http" => SPAM
hint more "my" => SPAM
hint more "please" => SPAM
hint more "song" => HAM
hint more "love" => HAM
hint more "views" => HAM
hint more words(text) => SPAM
hint "great song" -> "great song, check out my channel" => SPAM
"""

SMS_SPEC = r"""
concept sms_spam "Unsolicited commercial text messages"
labels SPAM, HAM
field text = "text"

define prize  = any("won", "winner", "prize", "claim", "award", "guaranteed", "cash")
define offer  = any("free", "txt", "text", "call", "reply", "send")
define casual = any("lol", "haha", "sorry", "ok", "okay", "k", "later", "home", "love you", "miss you")

rule link      : text ~ /www\.|https?:|\.co\.uk|\.com\b/i               => SPAM
rule prize     : text has prize                                          => SPAM
rule free      : text has "free" and text has offer                      => SPAM
rule shortcode : text ~ /\b\d{5}\b/                                      => SPAM
rule phone     : text ~ /\b0\d{9,10}\b/                                  => SPAM
rule stop      : text has any("stop", "unsubscribe", "opt out") and text has offer => SPAM
rule short     : words(text) <= 6 and digit_ratio(text) < 0.1            => HAM
rule casual    : text has casual and digit_ratio(text) < 0.05            => HAM
rule me        : text has any("i'm", "i am", "i'll", "i will", "u r", "my") and words(text) <= 20
                 and digit_ratio(text) < 0.05                            => HAM
"""

SMS_HINTS = """
hint more "txt" => SPAM
hint more "mobile" => SPAM
hint more "claim" => SPAM
hint more "urgent" => SPAM
hint more "reply" => SPAM
hint more "tone" => SPAM
hint more "i" => HAM
hint more "lol" => HAM
hint more "home" => HAM
hint more digit_ratio(text) => SPAM
hint "call me when you get home" -> "call 09061701461 to claim your prize" => SPAM
"""


# ---- data ------------------------------------------------------------------------------------
def youtube():
    """(spec text, spec path, train table, train gold, test table, test gold); gold 0 = SPAM."""
    path = ROOT / "specs" / "youtube_spam.mt"
    rules = "\n".join(line for line in path.read_text(encoding="utf-8").splitlines()
                      if not line.startswith("hint "))
    opts = pacsv.ConvertOptions(strings_can_be_null=True)
    tr = pacsv.read_csv(ROOT / "data" / "youtube" / "train.csv", convert_options=opts)
    te = pacsv.read_csv(ROOT / "data" / "youtube" / "test.csv", convert_options=opts)

    def gold(t):
        return np.where(np.asarray(t.column("CLASS").to_pylist()) == 1, 0, 1)
    return rules, path, tr, gold(tr), te, gold(te)


def sms():
    lines = [ln.split("\t", 1) for ln in SMS_FILE.read_text(encoding="utf-8").splitlines() if ln.strip()]
    texts = [t for _, t in lines]
    y = np.array([0 if lab == "spam" else 1 for lab, _ in lines])
    perm = np.random.default_rng(SMS_SPLIT_SEED).permutation(len(texts))
    cut = int(0.8 * len(texts))
    tr_i, te_i = np.sort(perm[:cut]), np.sort(perm[cut:])

    def table(idx):
        return pa.table({"text": pa.array([texts[i] for i in idx], pa.string())})
    return SMS_SPEC, Path(tempfile.gettempdir()) / "mteach_bench_sms.mt", table(tr_i), y[tr_i], table(te_i), y[te_i]


DATASETS = {"youtube": (youtube, YOUTUBE_HINTS), "sms": (sms, SMS_HINTS)}


# ---- one data set ---------------------------------------------------------------------------
def f1(pred, gold, positive=0) -> float:
    tp = np.sum((pred == positive) & (gold == positive))
    fp = np.sum((pred == positive) & (gold != positive))
    fn = np.sum((pred != positive) & (gold == positive))
    return float(2 * tp / max(1, 2 * tp + fp + fn))


def random_labels(hints, labels, seed: int):
    """The control: each hint pointing at a label drawn at random (seeded)."""
    r = np.random.default_rng(1000 + seed)
    return [dataclasses.replace(h, label=labels[int(r.integers(len(labels)))]) for h in hints]


def run(name: str, seeds: int, rows: int, settings: Settings, params: dict) -> dict:
    load, hint_text = DATASETS[name]
    rules, path, tr, y_tr, te, y_te = load()
    spec = load_spec(path, tr.schema, text=rules + "\n" + hint_text)
    labels = list(spec.labels)
    votes = vote_matrix(spec, tr)
    covered = np.flatnonzero((votes != -1).any(axis=1))
    te_uncovered = ~(vote_matrix(spec, te) != -1).any(axis=1)
    lm = fit_for_spec(spec, votes, None, prior_strength=settings.label_model.prior_strength,
                      max_iter=settings.label_model.max_iter, seed=settings.label_model.seed)
    soft = lm.predict_proba(votes)

    text_fields = [n for n, k in spec.field_kinds.items() if k == "text"]
    ftr, fte = _feature_table(spec, tr), _feature_table(spec, te)
    fkw = settings.featurizer_params()
    plain = Featurizer(text_fields, numeric=None, **fkw).fit(ftr)
    with_measures = Featurizer(text_fields, numeric=numeric_features(_spec_on_fields(spec)), **fkw).fit(ftr)
    X = {"plain": (plain.transform(ftr), plain.transform(fte)),
         "measures": (with_measures.transform(ftr), with_measures.transform(fte))}

    def compiled(hints):
        return compile_hints(hints, with_measures, labels, measure_name_fn=measure_name,
                             margin=settings.hints.margin)

    print(f"\n== {name}: {tr.num_rows} train rows ({len(covered)} covered by a rule), "
          f"{te.num_rows} test rows ({int(te_uncovered.sum())} no rule covers); "
          f"{len(spec.hints)} hints; {X['measures'][0].shape[1]} features; label model on covered "
          f"train rows right on {np.mean(soft[covered].argmax(1) == y_tr[covered]):.3f}")
    results = {v: [] for v in ("none", "features", "hints", "control")}
    t0 = time.perf_counter()
    for seed in range(seeds):
        take = np.sort(np.random.default_rng(seed).choice(covered, size=min(rows, len(covered)), replace=False))
        runs = {"none": ("plain", []), "features": ("measures", []),
                "hints": ("measures", compiled(spec.hints)),
                "control": ("measures", compiled(random_labels(spec.hints, labels, seed)))}
        for variant, (space, hints) in runs.items():
            Xtr, Xte = X[space]
            m = EndModel(**{**params, "seed": seed}).fit(Xtr[take], soft[take], hints=hints)
            pred = m.predict(Xte)
            results[variant].append((np.mean(pred == y_te), f1(pred, y_te),
                                     np.mean(pred[te_uncovered] == y_te[te_uncovered])))
    dt = time.perf_counter() - t0
    print(f"{'variant':9} {'accuracy':>16} {'F1 (SPAM)':>16} {'acc. uncovered':>16}   (test split; mean ± sd "
          f"over {seeds} seeds; per-seed accuracy)")
    summary = {}
    for variant, rs in results.items():
        a = np.array(rs)
        mean, sd = a.mean(axis=0), a.std(axis=0)
        summary[variant] = mean
        cells = " ".join(f"{100 * mu:8.1f} ± {100 * s:4.1f}" for mu, s in zip(mean, sd))
        print(f"{variant:9} {cells}   " + " ".join(f"{100 * v:.1f}" for v in a[:, 0]))
    d = summary["hints"] - summary["none"]
    print(f"hints - none: accuracy {100 * d[0]:+.1f}, F1 {100 * d[1]:+.1f}; hints - features: accuracy "
          f"{100 * (summary['hints'][0] - summary['features'][0]):+.1f}; control - none: accuracy "
          f"{100 * (summary['control'][0] - summary['none'][0]):+.1f}   ({dt:.0f}s)")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rows", type=int, default=200, help="covered rows the end model is trained on")
    ap.add_argument("--data", default="youtube,sms", help="comma-separated: youtube, sms")
    ap.add_argument("--strength", type=float, help="hint strength (default: mteach.toml's default)")
    ap.add_argument("--margin", type=float, help="hint margin (default: mteach.toml's default)")
    a = ap.parse_args()
    s = Settings()
    if a.strength is not None or a.margin is not None:
        s = dataclasses.replace(s, hints=dataclasses.replace(
            s.hints, **{k: v for k, v in (("strength", a.strength), ("margin", a.margin)) if v is not None}))
    params = s.end_model_params()
    print(f"end model {params}; {a.rows} training rows; load {os.getloadavg()[0]:.2f}")
    for name in a.data.split(","):
        run(name.strip(), a.seeds, a.rows, s, params)


if __name__ == "__main__":
    main()
