"""`python -m w2vbert ...` is the `w2vbert` command."""

import sys

from w2vbert.cli.parser import main

sys.exit(main())
