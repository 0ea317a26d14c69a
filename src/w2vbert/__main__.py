"""`python -m w2vbert ...` is the `w2vbert` command."""

import sys

from .cli import main

sys.exit(main())
