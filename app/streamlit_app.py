"""The ssl-explorer dashboard: `ssl-explorer app`, or `streamlit run app/streamlit_app.py`.

Pages (app_pages/) stay thin: they read run folders and call ssl_core, with shared pieces in
widgets/ and the cached loaders in loaders.py. No training and no math happen here; training
runs as a separate process (ssl_core.workflows.jobs).
"""

import sys
from pathlib import Path

import streamlit as st

# Pages import `loaders`, `widgets.…` and the other modules beside this file. `streamlit run`
# puts this folder on sys.path, but other runners (AppTest, `python -m streamlit` from elsewhere)
# may not: this is the one place that makes sure.
APP_DIR = Path(__file__).resolve().parent
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))

# One favicon for every page, given here: a page's Material icon would otherwise become the
# favicon, which Streamlit fetches from fonts.gstatic.com (the icons in the sidebar come from the
# font Streamlit serves itself). An emoji becomes an inline SVG: the app makes no request that
# leaves this machine, so it works offline (tests/test_browser.py checks every request).
st.set_page_config(layout="wide", page_title="ssl-explorer", page_icon="🔭")

from ssl_core.store.run_store import RunStore  # noqa: E402  (after the path set-up above)
from widgets.literal import sentence  # noqa: E402

try:
    RunStore().check_root()  # every page lists runs: say once, plainly, when the folder is unusable
except ValueError as e:
    st.error(sentence(e))  # names the runs folder: a user's path
    st.stop()

pages = [
    st.Page("app_pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("app_pages/runs.py", title="Runs", icon=":material/table_rows:"),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("app_pages/explore.py", title="Explore", icon=":material/scatter_plot:"),
    st.Page("app_pages/evaluate.py", title="Evaluate", icon=":material/analytics:"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("app_pages/clusters.py", title="Clusters", icon=":material/bubble_chart:"),
    st.Page("app_pages/attention.py", title="Attention", icon=":material/visibility:"),
    st.Page("app_pages/import_page.py", title="Import", icon=":material/upload_file:", url_path="import"),
]
st.navigation(pages).run()
