"""`python -m ssl_core.cli`: how background jobs start `ssl-explorer` with this interpreter."""

import sys

from ssl_core.cli import main

sys.exit(main())
