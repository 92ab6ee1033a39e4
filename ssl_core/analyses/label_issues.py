"""Label issues and subgroup gaps of a labelled run, from its stored embeddings.

Label issues: every labelled row (train then test) is scored by the self-confidence of
confident learning (Northcutt, Jiang & Chuang 2021, "Confident Learning: Estimating Uncertainty
in Dataset Labels", JAIR): the probability its neighbours give its own label. The probabilities
are the votes of its k nearest other rows (cosine, searched in the run's usual index,
`ssl_core.steps.index`, the row itself left out), each labelled neighbour voting for its label
with weight exp(similarity / 0.07) as eval.json's kNN classifier does. The lower the score, the
likelier the label is wrong; ties go to the row whose neighbours agree most on another label. A
row is counted as an issue, as confident learning counts them, when some other class j holds a
share of its votes at least that class's threshold (the mean share of class j among the rows
labelled j) and the largest such share is not its own label's.

Subgroup gaps: for each factor of the run (shapes: background texture, hue, scale, rotation,
position; imported runs: their metadata columns), the test rows of each level are classified
by the same weighted kNN as eval.json (k=20 against the stored train embeddings: the levels'
accuracies average to eval.json's knn_top1) and compared with the test rows at every other level
of that factor. Continuous factors are cut into quartiles (a factor with at most
`MAX_DISCRETE_VALUES` distinct values keeps them as levels). A level is flagged when it is at
least `MIN_GAP` below the rest and a two-proportion z-test puts it below at a Bonferroni-corrected
5% over every level tested.

Subgroups live in this analysis rather than their own: both read the same rows, labels and kNN
geometry, and both answer "where do the labels and the embedding disagree?".

    analysis/label_issues.npz    self_confidence (N,; NaN where unlabelled), majority (N,; the
                                 neighbours' weighted majority label, -1 where none voted),
                                 flagged (N,), rank (labelled rows, likeliest issue first)
    analysis/label_issues.json   the settings, the count of issues, the top rows (row, id, split,
                                 given label, majority label, score, neighbours) and every
                                 factor level's kNN top-1 with its gap to the rest

    ssl-explorer analyze RUN_ID --only label_issues
"""

from __future__ import annotations

import time
from statistics import NormalDist
from typing import Any, Callable

import numpy as np

from ssl_core.analyses.clusters import normalized, small_set_threads
from ssl_core.analyses.outliers import knn_scores
from ssl_core.analyses.stored import has_stored, load_stored, store_result
from ssl_core.steps.browsing import label_name, load_stored_factors, row_order, run_dataset
from ssl_core.steps.embed import load_all_embeddings
from ssl_core.steps.readiness import viewable
from ssl_core.steps.evaluate import KNN_K, knn_predict
from ssl_core.steps.index import build_index, describe_index
from ssl_core.store import files
from ssl_core.store.runs import Run

NAME = "label_issues"
TEMPERATURE = 0.07  # the kNN classifier's (steps.evaluate.knn_predict)
TOP = 200  # rows stored in the top list
NEIGHBOURS_STORED = 10  # neighbours of each top row, nearest first, for the page to show
QUANTILE_BINS = 4
MAX_DISCRETE_VALUES = 8  # a numeric factor with at most this many values keeps them as levels
MIN_LEVEL_ROWS = 5  # test rows a level needs to be scored
MIN_GAP = 0.05  # a flagged level is at least this far (top-1) below the rest
ALPHA = 0.05  # the family-wise error rate of the flags

Progress = Callable[[float, str], None] | None


def label_issues_unavailable(run: Run) -> str | None:
    """Why label issues cannot be computed for `run`, or None (also before `embed`: the
    analysis then says which step is missing)."""
    try:
        labels = [np.load(run.embeddings_dir / files.labels(split), allow_pickle=False) for split in files.SPLITS]
    except FileNotFoundError:
        return None
    if not any(bool((part >= 0).any()) for part in labels):
        return "no labels: label issues and per-subgroup accuracy need labelled images"
    return None


# -- label issues --------------------------------------------------------------------------------
def neighbour_votes(x: np.ndarray, labels: np.ndarray, k: int, *, temperature: float = TEMPERATURE,
                    index=None) -> tuple[np.ndarray, np.ndarray]:
    """(vote shares (N, C), neighbours (N, k)) of L2-normalised rows `x` (N, D) with `labels`
    (N,; -1 unknown, C = max label + 1): each row's k nearest other rows vote for their labels
    with weight exp(cosine similarity / temperature); unlabelled neighbours do not vote. A row no
    labelled neighbour voted for has shares of NaN."""
    num_classes = int(labels.max(initial=-1)) + 1
    _, neighbours = knn_scores(x, k, index)
    similarity = np.einsum("nd,nkd->nk", x, x[neighbours])
    # shares do not change when every weight of a row is divided by the same number: the largest
    weights = np.exp((similarity - similarity.max(axis=1, keepdims=True)) / temperature)
    voters = labels[neighbours]
    weights = weights * (voters >= 0)
    votes = np.zeros((len(x), max(num_classes, 1)), dtype=np.float64)
    np.add.at(votes, (np.repeat(np.arange(len(x)), k), voters.clip(min=0).ravel()), weights.ravel())
    totals = votes.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(totals > 0, votes / totals, np.nan)
    return shares.astype(np.float32), neighbours


def self_confidence(shares: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The share of each row's votes that went to its own label (N,); NaN where unlabelled or
    no neighbour voted."""
    known = (labels >= 0) & (labels < shares.shape[1])
    score = np.full(len(labels), np.nan, dtype=np.float32)
    score[known] = shares[np.flatnonzero(known), labels[known]]
    return score


def issue_ranking(shares: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The scored rows, likeliest label issue first: lowest self-confidence, ties broken by the
    largest share of another label."""
    score = self_confidence(shares, labels)
    rows = np.flatnonzero(np.isfinite(score))
    other = shares[rows].copy()
    other[np.arange(len(rows)), labels[rows]] = -np.inf
    return rows[np.lexsort((-other.max(axis=1), score[rows]))]


def confident_issues(shares: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(whether each row is an issue (N,), the per-class thresholds (C,)) as confident learning
    counts the off-diagonal of its confident joint: row i labelled y is an issue when the class j
    with the largest share among those at or above their threshold t_j (the mean share of j over
    the rows labelled j) exists and is not y. A class no row is labelled with has threshold NaN."""
    num_classes = shares.shape[1]
    scored = (labels >= 0) & np.isfinite(shares).all(axis=1)
    thresholds = np.full(num_classes, np.nan, dtype=np.float32)
    for c in range(num_classes):
        members = scored & (labels == c)
        if members.any():
            thresholds[c] = shares[members, c].mean()
    confident = np.where(shares >= thresholds[None, :], shares, -np.inf)  # NaN thresholds: never confident
    best = confident.argmax(axis=1)
    has_confident = np.isfinite(confident.max(axis=1))
    return scored & has_confident & (best != labels), thresholds


# -- subgroup gaps -------------------------------------------------------------------------------
def factor_codes(values: np.ndarray, level_names: tuple[str, ...] | None) -> tuple[np.ndarray, list[str]]:
    """(level of each row (N,; -1 unknown), the levels' names) of one factor: its own levels when
    categorical, its distinct values when it has few, else its quartiles over all rows."""
    values = np.asarray(values)
    if level_names is not None:
        codes = values.astype(np.int64)
        return np.where((codes >= 0) & (codes < len(level_names)), codes, -1), [str(n) for n in level_names]
    numbers = values.astype(np.float64)
    finite = np.isfinite(numbers)
    distinct = np.unique(numbers[finite])
    if len(distinct) <= MAX_DISCRETE_VALUES:
        codes = np.where(finite, np.searchsorted(distinct, np.where(finite, numbers, 0.0)), -1)
        return codes, [f"{v:g}" for v in distinct]
    edges = np.unique(np.quantile(numbers[finite], np.linspace(0, 1, QUANTILE_BINS + 1)))
    codes = np.where(finite, np.searchsorted(edges[1:-1], np.where(finite, numbers, 0.0), side="right"), -1)
    names = [f"q{i + 1} [{lo:.3g}, {hi:.3g}{']' if i == len(edges) - 2 else ')'}"
             for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))]
    return codes, names


def two_proportion_z(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    """z of the pooled two-proportion test of hits_a / n_a against hits_b / n_b (0 when both are
    all hits or all misses)."""
    pooled = (hits_a + hits_b) / (n_a + n_b)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    return float((hits_a / n_a - hits_b / n_b) / se) if se > 0 else 0.0


def subgroup_gaps(correct: np.ndarray, factors: dict[str, tuple[np.ndarray, list[str]]], *,
                  min_rows: int = MIN_LEVEL_ROWS, min_gap: float = MIN_GAP, alpha: float = ALPHA
                  ) -> dict[str, Any]:
    """Per factor level: the top-1 of the test rows at it against those at the factor's other
    levels. `correct` (n,) whether each test row's kNN prediction was right; `factors` {name:
    (level codes (n,), level names)}. Returns {"levels": entries, worst gap first, "flagged":
    their count, "z_critical", "levels_tested", "skipped": [notes]}."""
    entries, skipped = [], []
    for name, (codes, names) in factors.items():
        known = codes >= 0
        for code, level in enumerate(names):
            at = known & (codes == code)
            rest = known & (codes != code)
            if at.sum() < min_rows or rest.sum() < min_rows:
                skipped.append(f"{name} = {level}: {int(at.sum())} test rows")
                continue
            hits, n = int(correct[at].sum()), int(at.sum())
            rest_hits, rest_n = int(correct[rest].sum()), int(rest.sum())
            entries.append({"factor": name, "level": level, "n_test": n, "top1": round(hits / n, 4),
                            "rest_top1": round(rest_hits / rest_n, 4), "gap": round(hits / n - rest_hits / rest_n, 4),
                            "z": round(two_proportion_z(hits, n, rest_hits, rest_n), 3)})
    # One-sided (a level below the rest), Bonferroni over every level tested.
    z_critical = NormalDist().inv_cdf(1 - alpha / max(len(entries), 1))
    for entry in entries:
        entry["flagged"] = bool(entry["gap"] <= -min_gap and entry["z"] <= -z_critical)
    entries.sort(key=lambda e: (e["gap"], e["z"]))
    return {"levels": entries, "flagged": sum(e["flagged"] for e in entries), "levels_tested": len(entries),
            "z_critical": round(z_critical, 3), "skipped": skipped}


def row_factors(run: Run, ids: list[str]) -> dict[str, tuple[np.ndarray, tuple[str, ...] | None]]:
    """{factor: (values in the rows' order (train then test), level names or None)} of the run's
    dataset; ValueError when the dataset no longer holds the embedded images."""
    if viewable(run) is not None:  # imported without images: its metadata is stored in row order
        factors, levels = load_stored_factors(run)
        return {name: (values, tuple(levels[name]) if name in levels else None) for name, values in factors.items()}
    data = run_dataset(run)
    if not data.factors:
        return {}
    order = row_order(data)
    if [data.ids[i] for i in order] != list(ids):
        raise ValueError(f"run {run.id}: the dataset no longer matches the stored embeddings; "
                         f"run `ssl-explorer embed {run.id}` again")
    return {name: (np.asarray(values)[order], data.factor_levels.get(name)) for name, values in data.factors.items()}


# -- the analysis ----------------------------------------------------------------------------
def _report(progress: Progress, fraction: float, text: str) -> None:
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), text)


def label_issue_run(run: Run, *, device: str = "cpu", progress: Progress = None, k: int = KNN_K,
                    top: int = TOP) -> dict[str, Any]:
    """Label-issue scores of every labelled row and the kNN top-1 of each factor level; writes
    analysis/label_issues.npz and .json (see the module docstring) and returns the summary.
    `device` is accepted for the shared interface: ssl_core.steps.index decides where to search."""
    reason = label_issues_unavailable(run)
    if reason:
        raise ValueError(f"run {run.id}: no label issues: {reason}")
    if top < 1:
        raise ValueError(f"top must be at least 1; got {top}")
    t0 = time.perf_counter()
    _report(progress, 0.0, "loading embeddings")
    vectors, labels, ids, splits = load_all_embeddings(run)
    n = len(vectors)
    if n < 2:
        raise ValueError(f"run {run.id} has {n} embedding(s); label issues need at least 2")
    k = min(k, n - 1)
    class_names = run.read_class_names()
    x = normalized(vectors)

    _report(progress, 0.1, f"votes of the {k} nearest neighbours of every row")
    with small_set_threads(n):
        index = build_index(x)
        shares, neighbours = neighbour_votes(x, labels, k, index=index)
    score = self_confidence(shares, labels)
    rank = issue_ranking(shares, labels)
    flagged, thresholds = confident_issues(shares, labels)
    voted = np.isfinite(shares).all(axis=1)
    majority = np.where(voted, np.nan_to_num(shares, nan=-1.0).argmax(axis=1), -1).astype(np.int64)
    seconds = {"issues": round(time.perf_counter() - t0, 3)}

    def describe(row: int) -> dict[str, Any]:
        given, voted_for = int(labels[row]), int(majority[row])
        return {"row": int(row), "id": ids[row], "split": str(splits[row]), "label": given,
                "label_name": label_name(class_names, given), "majority": voted_for,
                "majority_name": label_name(class_names, voted_for), "score": round(float(score[row]), 4),
                "majority_share": round(float(shares[row, voted_for]), 4) if voted_for >= 0 else None,
                "flagged": bool(flagged[row]), "neighbours": [int(r) for r in neighbours[row, :NEIGHBOURS_STORED]]}

    _report(progress, 0.5, "kNN top-1 of the test rows per factor level")
    started = time.perf_counter()
    subgroups = _subgroups(run, vectors, labels, ids, splits)
    seconds["subgroups"] = round(time.perf_counter() - started, 3)

    scored = int(np.isfinite(score).sum())
    summary: dict[str, Any] = {
        "name": NAME, "run_id": run.id, "num_rows": int(n), "rows": "train then test",
        "settings": {"k": int(k), "temperature": TEMPERATURE, "index": describe_index(index), "top": int(top),
                     "score": "self-confidence: the share of the k nearest other rows' weighted votes that "
                              "went to the row's own label (confident learning, Northcutt et al. 2021)",
                     "subgroups": f"weighted kNN top-1 (k={KNN_K}) of the test rows against the stored train "
                                  "embeddings, per factor level, against the factor's other levels",
                     "quantile_bins": QUANTILE_BINS, "min_level_rows": MIN_LEVEL_ROWS, "min_gap": MIN_GAP,
                     "alpha": ALPHA},
        "issues": {"scored_rows": scored, "flagged": int(flagged.sum()),
                   "flagged_share": round(float(flagged.sum() / max(scored, 1)), 4),
                   "class_thresholds": [None if np.isnan(t) else round(float(t), 4) for t in thresholds]},
        "top_issues": [describe(r) for r in rank[:top]],
        "subgroups": subgroups,
        "seconds": {**seconds, "total": round(time.perf_counter() - t0, 3)},
    }
    store_result(run, NAME, summary, self_confidence=score, majority=majority, flagged=flagged,
                 rank=rank.astype(np.int64))
    _report(progress, 1.0, "label issues stored")
    return summary


def _subgroups(run: Run, vectors: np.ndarray, labels: np.ndarray, ids: list[str],
               splits: np.ndarray) -> dict[str, Any]:
    """subgroup_gaps over the run's factors, or a note saying why there are none."""
    train = (splits == "train") & (labels >= 0)
    test = np.flatnonzero((splits == "test") & (labels >= 0))
    if not train.any() or not len(test):
        return {"levels": [], "flagged": 0, "note": "no labelled train rows to classify with, or no labelled test rows"}
    num_classes = int(labels.max()) + 1
    predicted = knn_predict(vectors[train], labels[train], vectors[test], num_classes=num_classes, k=KNN_K).numpy()
    correct = predicted == labels[test]
    factors = row_factors(run, ids)
    levels = {}
    for name, (values, names) in factors.items():
        codes, level_names = factor_codes(values, names)  # quartiles over every row, train and test
        levels[name] = (codes[test], level_names)
    result = subgroup_gaps(correct, levels)
    result.update(k=KNN_K, test_rows=int(len(test)), knn_top1=round(float(correct.mean()), 4))
    if not factors:
        result["note"] = (f"the dataset '{run.config.data.dataset}' has no known factors (generated sets such as "
                          "shapes have them; imported runs take them from metadata columns)")
    return result


def has_label_issues(run: Run) -> bool:
    return has_stored(run, NAME)


def load_label_issues(run: Run) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(label_issues.json, the arrays of label_issues.npz) as `label_issue_run` stored them."""
    return load_stored(run, NAME, "label issues", per_row=("self_confidence", "majority", "flagged"))
