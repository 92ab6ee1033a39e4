"""Clusters: a run's map coloured by its k-means or HDBSCAN clusters or by outlier score (a
click on a point shows its cluster and score and opens its cluster below), the clusters with
their most central and most outlying images, its outliers (images far from all others), its near-duplicate pairs, the images whose
neighbours disagree most with their label (likely label issues) beside those neighbours, and the
factor levels (subgroups) its kNN classifier does worst on. All of it is computed once by
`ssl-explorer analyze RUN_ID` (or a job started here) and only read."""

from __future__ import annotations

import zlib
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

import loaders
from ssl_core.workflows import jobs
from ssl_core.analyses.clusters import HDBSCAN_FACTOR, KMEANS_FACTOR, has_clusters, with_cluster_factors
from ssl_core.analyses.label_issues import has_label_issues
from ssl_core.analyses.runner import not_applicable
from ssl_core.steps.browsing import label_name
from ssl_core.steps.readiness import embedded, viewable
from ssl_core.analyses.outliers import OUTLIER_FACTOR, has_outliers, pairs_above, with_outlier_score
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import Run
from widgets.image_grid import enlarge, image_grid
from widgets.literal import literal, sentence
from widgets.map_figure import LABEL
from widgets.run_picker import best_self_supervised_id, pick_run
from widgets.scatter_map import scatter_map
from widgets.scatter_map.payload import cached_payload

ALGORITHMS = {"kmeans": "k-means", "hdbscan": "HDBSCAN"}
PAIRS_SHOWN = 24  # near-duplicate pairs drawn at once; the count covers all that pass the threshold
POLL_SECONDS = 3  # while a job computes an analysis, how often the page looks for its result
ISSUE_NEIGHBOURS = 7  # neighbours shown beside each likely label issue (one grid row of 8)
HAS_RESULT = {"clusters": has_clusters, "outliers": has_outliers, "label_issues": has_label_issues}
CLUSTER_FACTORS = {"kmeans": KMEANS_FACTOR, "hdbscan": HDBSCAN_FACTOR}


def caption(summary: dict, labels, row: int, row_id: str, value: str) -> str:
    """'id · value · label' under one of a cluster's images."""
    return " · ".join([row_id, value, label_name(summary.get("class_names") or [], int(labels[row]))])


def pictures(images, rows, captions) -> None:
    """The images of `rows` in a grid with their captions; a run imported without images lists
    the captions (id, value, label) as a table instead."""
    if images is None:
        st.dataframe(pd.DataFrame({"row": [int(r) for r in rows], "id · value · label": list(captions)}),
                     hide_index=True)
    else:
        image_grid(images[rows], captions, columns=8)


@st.fragment(run_every=POLL_SECONDS)
def wait_for(run: Run, name: str) -> None:
    """Reruns the page once the job has stored the analysis; meanwhile only this fragment reruns."""
    if HAS_RESULT[name](run):
        st.rerun()


def not_computed(store: RunStore, run: Run, name: str, what: str) -> None:
    """Says which command computes `name`, and offers to start it as a background job."""
    command = f"ssl-explorer analyze {run.id} --only {name}"
    start = getattr(jobs, "start_analysis", None)
    st.info(f"The {what} of run {literal(run.id)} are not computed yet: `{command}` computes them"
            + (", or start it here as a background job." if start else "."))
    started_key = f"clusters_started_{name}_{run.id}"
    if start is not None and st.button(f"Compute the {what}", key=f"clusters_start_{name}_{what}"):
        try:
            start(store, run.id, [name])
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            st.error(f"Could not start the {what}: {sentence(e)}")
        else:
            st.session_state[started_key] = True
    if st.session_state.get(started_key):
        st.success(f"Computing the {what} in the background; they appear here when stored.")
        wait_for(run, name)


def on_map_select(clusters: tuple[dict, dict] | None, rows: np.ndarray) -> None:
    """A click on a point shows it beside the map and opens its cluster (of the algorithm
    chosen) in the Clusters tab; a noise point leaves the cluster as it was."""
    if len(rows) != 1:
        return
    st.session_state["clusters_point"] = int(rows[0])
    if clusters is not None:
        algorithm = st.session_state.get("clusters_algorithm", "kmeans")
        cluster = int(clusters[1][f"{algorithm}_labels"][rows[0]])
        if cluster >= 0:
            st.session_state["clusters_cluster"] = cluster


def cluster_name(cluster: int) -> str:
    return "noise" if cluster < 0 else f"cluster {cluster}"


def point_facts(clusters, outliers, algorithm: str, row: int) -> list[str]:
    """What the page knows of one row: its clusters (the chosen algorithm's first), its
    outlier score and rank."""
    facts = []
    if clusters is not None:
        for name in sorted(ALGORITHMS, key=lambda a: a != algorithm):
            facts.append(f"{ALGORITHMS[name]} {cluster_name(int(clusters[1][f'{name}_labels'][row]))}")
    if outliers is not None:
        score, ranking = outliers[1]["score"], outliers[1]["rank"]
        place = np.flatnonzero(ranking == row)
        rank = f" (rank {int(place[0]) + 1:,} of {len(score):,})" if len(place) else ""
        facts.append(f"outlier score {float(score[row]):.3f}{rank}")
    return facts


def cluster_map(run: Run, clusters, outliers, images, algorithm: str) -> None:
    """The run's map coloured by the chosen algorithm's clusters, by outlier score or by label,
    with the point clicked last beside it."""
    try:
        data = loaders.explore_data(run)
        if clusters is not None:
            data = with_cluster_factors(data, *clusters)
        if outliers is not None:
            data = with_outlier_score(data, outliers[1])
    except (OSError, ValueError, KeyError) as e:
        st.caption(f"No map: {sentence(e)}")
        return
    colourings = {**({"cluster": CLUSTER_FACTORS[algorithm]} if clusters is not None else {}),
                  **({"outlier score": OUTLIER_FACTOR} if outliers is not None else {}), "label": LABEL}
    if st.session_state.get("clusters_colour") not in colourings:
        st.session_state.pop("clusters_colour", None)
    colour = st.radio("Colour the map by", list(colourings), horizontal=True, key="clusters_colour")
    # The scores are part of the key: computing the outliers again gives another colouring.
    scores = zlib.crc32(np.ascontiguousarray(outliers[1]["score"]).tobytes()) if outliers is not None else None
    map_col, point_col = st.columns([3, 1], gap="medium")
    with map_col:
        try:  # built once per version of the run's map, clusters and scores, and colouring
            payload = cached_payload((*loaders.explore_key(run), loaders.clusters_key(run), scores),
                                     colourings[colour], data)
        except ValueError as e:
            st.error(f"Cannot draw the map: {sentence(e)}")
            return
        selection = scatter_map(payload, images, key="clusters_map", height=520,
                                on_select=partial(on_map_select, clusters))
        if len(selection) > 1 and clusters is not None:
            codes, counts = np.unique(clusters[1][f"{algorithm}_labels"][selection], return_counts=True)
            order = np.argsort(-counts, kind="stable")
            st.caption(f"{len(selection):,} images selected, in " + ", ".join(
                f"{cluster_name(int(codes[i]))} ({counts[i]:,})" for i in order))
        else:
            st.caption("Click a point for its cluster and outlier score; Box or Lasso (above the map) picks a "
                       "group to count its clusters.")
    row = st.session_state.get("clusters_point")
    if row is not None and 0 <= row < len(data.ids):
        with point_col:
            if images is not None:
                st.image(enlarge(images[row], 128))
            st.markdown(f"**{literal(data.ids[row])}** · {literal(data.label_name(row))}  \n"
                        + "  \n".join(point_facts(clusters, outliers, algorithm, row)))


store = RunStore()
st.title("Clusters")
run = pick_run(store, "clusters", blocker=embedded,
               default=lambda: best_self_supervised_id(store, embedded))
if run is None:
    st.stop()
if st.session_state.get("clusters_for_run") != run.id:  # a new run starts on its largest cluster
    st.session_state["clusters_for_run"] = run.id
    st.session_state.pop("clusters_cluster", None)
    st.session_state.pop("clusters_point", None)

try:
    clusters = loaders.clusters(run)
    outliers = loaders.outliers(run)
    issues = loaders.label_issues(run)
    no_images = viewable(run)  # imported from its embeddings alone: ids and labels stand in for pictures
    shown = no_images is None and any(r is not None for r in (clusters, outliers, issues))
    images = loaders.images(run) if shown else None
except (OSError, ValueError, KeyError) as e:
    st.error(f"Cannot show the analyses of run {literal(run.id)}: {sentence(e)}")
    st.stop()

algorithm = "kmeans"
if clusters is not None:  # above the map: the map and the Clusters tab show the same clusters
    algorithm = st.radio("Algorithm", list(ALGORITHMS), format_func=ALGORITHMS.get, horizontal=True,
                         key="clusters_algorithm")
if no_images is not None and any(r is not None for r in (clusters, outliers, issues)):
    st.info(f"No pictures here: {sentence(no_images)}. The lists below name each image by its id.")
if clusters is not None or outliers is not None:
    cluster_map(run, clusters, outliers, images, algorithm)

clusters_tab, outliers_tab, pairs_tab, issues_tab, subgroups_tab = st.tabs(
    ["Clusters", "Outliers", "Near-duplicates", "Label issues", "Subgroup gaps"])
unlabelled = not_applicable(run).get("label_issues")  # why a run cannot have label issues (no labels)

with clusters_tab:
    if clusters is None:
        not_computed(store, run, "clusters", "clusters")
    else:
        summary, arrays = clusters
        result = summary[algorithm]
        settings = summary["settings"][algorithm]
        facts = [f"{result['num_clusters']} clusters of {summary['num_rows']:,} images"]
        if algorithm == "kmeans":
            facts.append(f"k = {settings['k']} ({settings['k_rule']})")
        else:
            facts.append(f"{result['noise_rows']:,} images ({result['noise_fraction']:.0%}) are noise, in no cluster")
            facts.append(f"min cluster size {settings['min_cluster_size']}, on {settings['pca_dims']} PCA dims")
        labelled = summary.get("labelled", True)
        if result.get("purity") is not None:
            facts.append(f"purity {result['purity']:.3f} · NMI {result['nmi']:.3f} · ARI {result['ari']:.3f} "
                         "against the labels")
        elif not labelled:
            facts.append("no labels: purity, NMI and ARI need labels, so the clusters stand on their own")
        st.caption(" · ".join(facts))
        records = result["clusters"]
        if not records:
            st.info(f"{ALGORITHMS[algorithm]} found no cluster in this run: every image is noise.")
        else:
            table = pd.DataFrame({
                "cluster": [r["cluster"] for r in records],
                "images": [r["size"] for r in records],
                "dominant label": [r["dominant_label_name"] or "" for r in records],
                "purity": [r["purity"] for r in records],
                "mean distance": [r["mean_distance"] for r in records],
            })
            if not labelled:  # no label to dominate a cluster: empty columns would only puzzle
                table = table.drop(columns=["dominant label", "purity"])
            by_cluster = {r["cluster"]: r for r in records}
            if st.session_state.get("clusters_cluster") not in by_cluster:
                st.session_state["clusters_cluster"] = records[0]["cluster"]

            def on_table_select() -> None:
                rows = st.session_state["clusters_table"].selection.rows
                if rows:
                    st.session_state["clusters_cluster"] = records[rows[0]]["cluster"]

            st.dataframe(table, hide_index=True, on_select=on_table_select, selection_mode="single-row",
                         key="clusters_table", column_config={
                             "purity": st.column_config.ProgressColumn("purity", min_value=0.0, max_value=1.0,
                                                                       format="%.2f")})

            def describe(cluster: int) -> str:
                record = by_cluster[cluster]
                label = (f" · mostly {record['dominant_label_name']} ({record['purity']:.0%})"
                         if record["purity"] is not None else "")
                return f"cluster {cluster} · {record['size']:,} images{label}"

            chosen = st.selectbox("Cluster", list(by_cluster), format_func=describe, key="clusters_cluster",
                                  help="or click a row of the table")
            record = by_cluster[chosen]
            distance, labels = arrays[f"{algorithm}_distance"], arrays["labels"]
            for title, kind in (("most central", "central"), ("most outlying", "outlying")):
                rows, ids = record[f"{kind}_rows"], record[f"{kind}_ids"]
                st.subheader(f"Cluster {chosen}: {title} images")
                pictures(images, rows, [caption(summary, labels, row, row_id, f"d={distance[row]:.3f}")
                                        for row, row_id in zip(rows, ids)])
            st.caption("d: cosine distance to the cluster's centre.")

with outliers_tab:
    if outliers is None:
        not_computed(store, run, "outliers", "outlier scores")
    else:
        summary, arrays = outliers
        settings, stats = summary["settings"], summary["score_stats"]
        st.caption(f"Score: mean cosine distance to the {settings['k']} nearest other images, over "
                   f"{summary['num_rows']:,} images (median {stats['median']:.3f}, 99th percentile "
                   f"{stats['p99']:.3f}). The highest first:")
        top = summary["top_outliers"]
        shown = len(top) if len(top) < 2 else int(st.slider(
            "Images", min_value=1, max_value=len(top), value=min(32, len(top)), key="clusters_outliers_shown"))
        rows = [o["row"] for o in top[:shown]]
        pictures(images, rows, [" · ".join([o["id"], f"score={o['score']:.3f}", o["label_name"] or "unlabelled"])
                                for o in top[:shown]])

with pairs_tab:
    if outliers is None:
        not_computed(store, run, "outliers", "near-duplicate pairs")
    else:
        summary, _ = outliers
        duplicates = summary["duplicates"]
        stored_threshold = float(duplicates["threshold"])
        threshold = stored_threshold if stored_threshold >= 1.0 else st.slider(
            "Cosine similarity at least", min_value=stored_threshold, max_value=1.0, value=stored_threshold,
            step=0.001, format="%.3f", key="clusters_pair_threshold",
            help="filters the stored pairs; pairs below the threshold they were computed with were never "
                 f"stored (`ssl-explorer analyze {run.id} --only outliers` computes them again)")
        pairs = pairs_above(summary, threshold)
        capped = (f" (the {duplicates['pairs_stored']:,} most similar of the {duplicates['pairs_found']:,} pairs "
                  f"at {stored_threshold:.3f} or more are stored)" if duplicates["capped"] else "")
        st.caption(f"{len(pairs):,} pairs at similarity {threshold:.3f} or more{capped}."
                   + (f" Showing the first {PAIRS_SHOWN}." if len(pairs) > PAIRS_SHOWN else ""))
        for pair in pairs[:PAIRS_SHOWN]:
            names = [literal(f"{pair[f'id_{s}']} · {pair[f'label_name_{s}'] or 'unlabelled'}") for s in "ab"]
            if images is None:
                st.markdown(f"{names[0]} and {names[1]}: similarity **{pair['similarity']:.4f}**")
                continue
            left, right, facts = st.columns([1, 1, 4])
            left.image(enlarge(images[pair["a"]]), caption=names[0])
            right.image(enlarge(images[pair["b"]]), caption=names[1])
            facts.markdown(f"similarity **{pair['similarity']:.4f}**")

with issues_tab:
    if unlabelled:
        st.info(f"No label issues for run {literal(run.id)}: {sentence(unlabelled)}.")
    elif issues is None:
        not_computed(store, run, "label_issues", "label issues")
    else:
        summary, _ = issues
        settings, counts = summary["settings"], summary["issues"]
        labels, ids, class_names = loaders.labels(run)
        scores = loaders.eval_scores(run) or {}
        knn = (f" With a kNN top-1 of {scores['knn_top1']:.1%}, many of them are the embedding's confusions rather "
               "than wrong labels: the list is most telling on a run that classifies well."
               if isinstance(scores.get("knn_top1"), float) and scores["knn_top1"] < 0.9 else "")
        st.caption(f"Score: the share of an image's {settings['k']} nearest neighbours' votes (weighted by similarity, "
                   f"as the kNN classifier's) that went to its own label; the lowest first. Confident learning counts "
                   f"{counts['flagged']:,} of {counts['scored_rows']:,} labelled images "
                   f"({counts['flagged_share']:.1%}) as likely mislabelled.{knn}")
        top = summary["top_issues"]
        shown = len(top) if len(top) < 2 else int(st.slider(
            "Images", min_value=1, max_value=min(len(top), 50), value=min(8, len(top)), key="clusters_issues_shown"))
        for entry in top[:shown]:
            neighbours = entry["neighbours"][:ISSUE_NEIGHBOURS]
            share = f" ({entry['majority_share']:.0%})" if entry.get("majority_share") is not None else ""
            st.markdown(f"**{literal(entry['id'])}** ({entry['split']}) · labelled **{literal(entry['label_name'])}** "
                        f"· its neighbours say **{literal(entry['majority_name'])}**{share} · "
                        f"score {entry['score']:.3f}")
            pictures(images, [entry["row"], *neighbours],
                     [f"{entry['id']} · labelled {entry['label_name']}"]
                     + [f"{ids[n]} · {label_name(class_names, int(labels[n]))}" for n in neighbours])

with subgroups_tab:
    if unlabelled:
        st.info(f"No subgroup gaps for run {literal(run.id)}: {sentence(unlabelled)}.")
    elif issues is None:
        not_computed(store, run, "label_issues", "subgroup gaps")
    else:
        summary, _ = issues
        groups = summary["subgroups"]
        if not groups.get("levels"):
            st.info(sentence(groups.get("note") or "No factor level has enough labelled test images to be scored."))
        else:
            settings = summary["settings"]
            flagged = [e for e in groups["levels"] if e["flagged"]]
            if flagged:
                more = f"; and {len(flagged) - 3} more in the table" if len(flagged) > 3 else ""
                st.warning("Largest gaps: " + "; ".join(
                    f"{literal(e['factor'])} = {literal(e['level'])}: {e['top1']:.1%} against {e['rest_top1']:.1%} "
                    f"for the rest ({e['n_test']:,} test images)" for e in flagged[:3]) + more,
                    icon=":material/warning:")
            else:
                st.success("No factor level is significantly worse than the rest.")
            table = pd.DataFrame(groups["levels"])[["factor", "level", "n_test", "top1", "rest_top1", "gap", "z",
                                                     "flagged"]]
            table = table.rename(columns={"n_test": "test images", "top1": "kNN top-1", "rest_top1": "rest"})
            st.dataframe(table, hide_index=True, key="clusters_subgroups", column_config={
                "kNN top-1": st.column_config.ProgressColumn("kNN top-1", min_value=0.0, max_value=1.0, format="%.3f"),
                "flagged": st.column_config.CheckboxColumn("flagged")})
            st.caption(f"Weighted kNN (k={groups.get('k', '?')}) of the "
                       f"{groups.get('test_rows', 0):,} labelled test images against the train embeddings "
                       f"(top-1 {groups.get('knn_top1', 0):.1%} in all), per level of each factor; continuous "
                       f"factors cut into {settings.get('quantile_bins', 4)} quantiles. Flagged: at least "
                       f"{settings.get('min_gap', 0.05):.0%} below the rest and below it by a z-test "
                       f"(z ≤ −{groups['z_critical']:.2f}: 5% over all {groups['levels_tested']} levels, "
                       "Bonferroni). "
                       "Colour the Explore page's map by a factor to see where a level lies.")
