"""A simulated expert teaching from `mteach suggest`, against a random reader and a hand-written spec.

    python bench/teach_sim.py [--k 5,10,20] [--datasets youtube,sms] [--max-reads 300] [--seed 0]
    python bench/teach_sim.py --refresh-rows 100000 --datasets ""   # suggestion refresh time on 100,000 rows

The expert is the training split's gold labels. Starting from the spec's header alone
(concept, labels, fields), it asks for candidate rules and reads them in the order given;
it accepts the first whose precision on the *training* gold is >= 0.8 and rejects the
others (rejected lines are not proposed again), until k rules are accepted. Before reading
rules it reads the fixes that rewrite an accepted rule (a rule for the rest of the data
whose ``unless`` lacks phrases of rules accepted since) and takes one when it raises that
rule's precision on the training gold; a fix is a read, not an accepted rule. After each
change the label model and the end model are retrained on the training split (no gold
given to either, so `train`'s blend is at its no-gold defaults: beta 0.25 on covered rows,
the end model on the others). When k reaches 5, 10 and 20, the test split is scored once:
accuracy and F1 of SPAM for the label model (its argmax on every test row) and for the
combined prediction.

Strategies, in the same run on the same data:
- suggest: `mteach.engine.suggest.suggest(kinds=("rule", "fix"))`, read best first;
- random: the same candidate family (every phrase, word pair and number threshold that
  `suggest` can propose, with every label) in a seeded random order (IWS's baseline);
- hand-written (YouTube only): specs/youtube_spam.mt, trained the same way.

End model settings (kept small for a 2-core shared machine): linear, word 1-2-grams, no
character n-grams, 10 epochs, Adam lr 0.1, batch 64, seed 0; label model defaults.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mteach.compiler.checker import load_spec  # noqa: E402
from mteach.compiler.evaluator import vote_matrix  # noqa: E402
from mteach.engine.gold import gold_from_column  # noqa: E402
from mteach.engine.label_model import fit_for_spec  # noqa: E402
from mteach.engine.suggest import SuggestData, _candidates, suggest  # noqa: E402
from mteach.engine.train import train  # noqa: E402
from mteach.errors import DataError  # noqa: E402
from mteach.settings import load_settings  # noqa: E402

ACCEPT = 0.8
DATASETS = {
    "youtube": dict(train=ROOT / "data/youtube/train.csv", test=ROOT / "data/youtube/test.csv",
                    spec=ROOT / "specs/youtube_spam.mt", gold="CLASS", gold_map={"1": "SPAM", "0": "HAM"},
                    hand_written=True),
    "sms": dict(train=ROOT / "data/sms/train.csv", test=ROOT / "data/sms/test.csv",
                spec=ROOT / "specs/sms_spam.mt", gold="label", gold_map={"spam": "SPAM", "ham": "HAM"},
                hand_written=False),
}


def settings():
    s = load_settings(None)
    return dataclasses.replace(
        s, features=dataclasses.replace(s.features, char_ngrams=False, ngram_range=(1, 2)),
        end_model=dataclasses.replace(s.end_model, epochs=10, device="cpu"))


def read(path) -> pa.Table:
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))


def header_of(spec_path: Path) -> str:
    """The spec's concept, labels and field lines: what the expert starts from."""
    keep = [line for line in spec_path.read_text(encoding="utf-8").splitlines()
            if line.split(" ", 1)[0] in ("concept", "labels", "field")]
    return "\n".join(keep) + "\n"


def f1(pred, gold, positive=0) -> float:
    tp = int(((pred == positive) & (gold == positive)).sum())
    fp = int(((pred == positive) & (gold != positive)).sum())
    fn = int(((pred != positive) & (gold == positive)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


class Learner:
    """Refits after each accepted rule; scores the test split on demand."""

    def __init__(self, spec_path, train_table, test_table):
        self.spec_path, self.train_table, self.test_table = spec_path, train_table, test_table
        self.model = None
        self.label_model = None
        self.settings = settings()

    def fit(self, spec):
        self.spec = spec
        votes = vote_matrix(spec, self.train_table)
        self.model, self.label_model = None, None
        try:
            self.model, _ = train(spec, self.train_table, self.settings)
            self.label_model = self.model.label_model
        except DataError:  # e.g. no rule votes one of the labels yet: the label model alone
            try:
                self.label_model = fit_for_spec(spec, votes)
            except DataError:
                pass
        return votes

    def end_proba_train(self):
        return self.model.end_model_proba(self.train_table) if self.model is not None else None

    def score(self, gold_test) -> dict:
        votes = vote_matrix(self.spec, self.test_table)
        if self.label_model is None:
            lm = np.zeros(len(gold_test), dtype=int)  # nothing learned: the first label everywhere
        else:
            lm = self.label_model.predict_proba(votes).argmax(axis=1)
        combined = self.model.predict(self.test_table, votes)["label"] if self.model is not None else lm
        return {"lm_acc": float((lm == gold_test).mean()), "lm_f1": f1(lm, gold_test),
                "acc": float((combined == gold_test).mean()), "f1": f1(combined, gold_test)}


def fired(spec_path, schema, header, line, table) -> np.ndarray:
    spec = load_spec(spec_path, schema, text=header + line + "\n")
    return vote_matrix(spec, table)[:, 0] != -1


def splits(cfg, validation: bool) -> tuple:
    """(training table, scored table). With ``validation``, a seeded quarter of the training
    split is held out and scored instead of the test split: settings are chosen there."""
    train_table = read(cfg["train"])
    if not validation:
        return train_table, read(cfg["test"])
    held = np.zeros(train_table.num_rows, bool)
    held[np.random.default_rng(12345).permutation(train_table.num_rows)[: train_table.num_rows // 4]] = True
    return train_table.filter(pa.array(~held)), train_table.filter(pa.array(held))


def simulate(name, cfg, strategy, ks, max_reads, seed, log, validation=False):
    train_table, test_table = splits(cfg, validation)
    header = header_of(cfg["spec"])
    labels = list(load_spec(cfg["spec"], train_table.schema, text=header).labels)
    gold_train = gold_from_column(train_table, cfg["gold"], cfg["gold_map"], labels, "train")
    gold_test = gold_from_column(test_table, cfg["gold"], cfg["gold_map"], labels, "test")
    data = SuggestData(train_table)
    learner = Learner(cfg["spec"], train_table, test_table)
    accepted, rejected, reads, results = [], set(), [], {}
    rng = np.random.default_rng(seed)
    random_pool = None
    spent = 0.0
    spec = load_spec(cfg["spec"], train_table.schema, text=header)
    votes = np.full((train_table.num_rows, 0), -1, np.int8)
    fixed, refused_fixes = 0, set()

    def precision(line) -> float:  # the expert's judgement: precision on the training gold
        rows = fired(cfg["spec"], train_table.schema, header, line, train_table)
        label = labels.index(line.rsplit("=>", 1)[1].split()[0])
        known = rows & (gold_train != -1)
        return float((gold_train[known] == label).mean()) if known.any() else 0.0

    while len(accepted) < max(ks):
        read_now, found = 0, None
        while found is None and read_now < max_reads:
            t0 = time.perf_counter()
            fixes = []
            if strategy == "suggest":
                given = suggest(spec, data, votes, end_proba=learner.end_proba_train(), label_proba=None, n=20,
                                kinds=("rule", "fix"), exclude=rejected, seed=seed)
                batch = [s.spec_line for s in given if s.kind == "rule"]
                fixes = [s for s in given if s.kind == "fix" and s.replaces and s.spec_line not in refused_fixes]
            else:
                if random_pool is None:
                    random_pool = _random_family(spec, data, labels, rng)
                batch = []
                while random_pool and len(batch) < 20:
                    line = random_pool.pop()
                    if _key(line) not in rejected and _key(line) not in {_key(a) for a in accepted}:
                        batch.append(line)
            spent += time.perf_counter() - t0
            if fixes:
                # rewrites of accepted rules come first; one is taken when it raises the rule's
                # precision on the training gold (it does not count as an accepted rule)
                fix = fixes[0]
                read_now += 1
                at = next(i for i, a in enumerate(accepted) if a.split()[1] == fix.replaces)
                if precision(fix.spec_line) > precision(accepted[at]):
                    accepted[at] = fix.spec_line
                    fixed += 1
                    spec = load_spec(cfg["spec"], train_table.schema, text=header + "\n".join(accepted) + "\n")
                    votes = learner.fit(spec)
                else:
                    refused_fixes.add(fix.spec_line)
                continue
            if not batch:
                break
            for line in batch:
                read_now += 1
                if precision(line) >= ACCEPT:
                    found = line
                    break
                rejected.add(_key(line))
                if read_now >= max_reads:
                    break
        if found is None:
            # the expert stops teaching: the model as it stands is the figure for every larger k
            log(f"  {name}/{strategy}: no acceptable rule within {max_reads} reads after {len(accepted)} rules")
            for k in ks:
                if k > len(accepted) and accepted:
                    results[k] = dict(learner.score(gold_test), reads=float(np.mean(reads)),
                                      total_reads=int(sum(reads)), rules=len(accepted), fixes=fixed)
                    _log_result(log, name, strategy, k, results[k])
            break
        accepted.append(_renamed(found, len(accepted)))
        reads.append(read_now)
        spec = load_spec(cfg["spec"], train_table.schema, text=header + "\n".join(accepted) + "\n")
        votes = learner.fit(spec)
        if len(accepted) in ks:
            results[len(accepted)] = dict(learner.score(gold_test), reads=float(np.mean(reads)),
                                          total_reads=int(sum(reads)), rules=len(accepted), fixes=fixed)
            _log_result(log, name, strategy, len(accepted), results[len(accepted)])
    return results, accepted, spent


def _log_result(log, name, strategy, k, r) -> None:
    rules = "" if r["rules"] == k else f" ({r['rules']} rules: no more acceptable suggestions)"
    rules += f", {r['fixes']} rules rewritten by fixes" if r.get("fixes") else ""
    log(f"  {name}/{strategy} k={k}: acc {r['acc']:.3f} F1 {r['f1']:.3f} "
        f"(label model {r['lm_acc']:.3f}/{r['lm_f1']:.3f}), {r['reads']:.1f} reads per acceptance{rules}")


def _key(line: str) -> str:
    """``PREDICATE => LABEL`` of a rule line, as ``suggest(exclude=...)`` takes it."""
    return line.split(":", 1)[1].strip()


def _renamed(line: str, i: int) -> str:
    """Suggested names can repeat across calls; number them in acceptance order."""
    name = line.split()[1]
    return line.replace(f"rule {name} :", f"rule r{i + 1}_{name} :", 1)


def _random_family(spec, data, labels, rng) -> list:
    cand = _candidates(spec, data)
    lines = [f"rule {lab.lower()}_{name} : {pred} => {lab}" for name, pred in zip(cand.names, cand.predicates)
             for lab in labels]
    order = rng.permutation(len(lines))
    return [lines[i] for i in order[::-1]]


def hand_written(cfg, validation=False) -> dict:
    train_table, test_table = splits(cfg, validation)
    spec = load_spec(cfg["spec"], train_table.schema)
    labels = list(spec.labels)
    gold_test = gold_from_column(test_table, cfg["gold"], cfg["gold_map"], labels, "test")
    learner = Learner(cfg["spec"], train_table, test_table)
    learner.fit(spec)
    return dict(learner.score(gold_test), rules=len(spec.rules))


def refresh_timing(rows: int, log) -> None:
    """Suggestion refresh on ``rows`` rows of replicated YouTube comments with the hand-written spec."""
    sys.path.insert(0, str(ROOT / "bench"))
    import pyarrow.parquet as pq
    from _common import replicated_parquet
    table = pq.read_table(replicated_parquet(rows))
    spec = load_spec(DATASETS["youtube"]["spec"], table.schema)
    votes = vote_matrix(spec, table)
    t0 = time.perf_counter()
    data = SuggestData(table, table.column("COMMENT_ID"))
    data.text("CONTENT")
    prepare = time.perf_counter() - t0
    label_proba = fit_for_spec(spec, votes).predict_proba(votes)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        found = suggest(spec, data, votes, label_proba=label_proba, n=20)
        times.append(time.perf_counter() - t0)
    log(f"refresh on {rows:,} rows x {len(spec.rules)} rules: median {np.median(times):.2f} s "
        f"(runs {', '.join(f'{t:.2f}' for t in times)}; {len(found)} suggestions); "
        f"once per data set: word index {prepare:.2f} s")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--k", default="5,10,20")
    p.add_argument("--datasets", default="youtube,sms")
    p.add_argument("--strategies", default="suggest,random")
    p.add_argument("--max-reads", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--refresh-rows", type=int, default=0)
    p.add_argument("--validation", action="store_true",
                   help="hold out a seeded quarter of the training split and score it instead of the test "
                        "split (for choosing settings; the test split is scored only without this flag)")
    args = p.parse_args(argv)
    ks = sorted(int(k) for k in args.k.split(","))
    log = lambda m: print(m, flush=True)  # noqa: E731
    import os
    log(f"load: {os.getloadavg()[0]:.2f} (1 min); scoring the {'validation' if args.validation else 'test'} split")
    if args.refresh_rows:
        refresh_timing(args.refresh_rows, log)
    table = []
    for name in filter(None, args.datasets.split(",")):
        cfg = DATASETS[name]
        for strategy in args.strategies.split(","):
            t0 = time.perf_counter()
            results, accepted, spent = simulate(name, cfg, strategy, ks, args.max_reads, args.seed, log,
                                                 args.validation)
            log(f"  {name}/{strategy}: {time.perf_counter() - t0:.0f} s ({spent:.1f} s choosing candidates); "
                f"accepted: {'; '.join(_key(a) for a in accepted)}")
            for k in ks:
                if k in results:
                    table.append((name, strategy, k, results[k]))
        if cfg["hand_written"]:
            r = hand_written(cfg, args.validation)
            table.append((name, f"hand-written ({r['rules']} rules)", r["rules"], r))
    print("\n| data | strategy | k | combined acc | combined F1 (SPAM) | label model acc | label model F1 | "
          "reads / acceptance |")
    print("|---|---|---|---|---|---|---|---|")
    for name, strategy, k, r in table:
        reads = f"{r['reads']:.1f}" if "reads" in r else "-"
        k = f"{k} ({r['rules']} rules)" if r.get("rules", k) != k else k
        print(f"| {name} | {strategy} | {k} | {r['acc']:.3f} | {r['f1']:.3f} | {r['lm_acc']:.3f} | "
              f"{r['lm_f1']:.3f} | {reads} |")
    log(f"load: {os.getloadavg()[0]:.2f} (1 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
