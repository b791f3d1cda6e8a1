"""`python -m link_fetcher …` runs the CLI (the same as the `link-fetcher` script)."""

import sys

from link_fetcher.cli import main

sys.exit(main())
