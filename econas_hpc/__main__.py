"""`python -m econas_hpc` entry point."""

import sys

from econas_hpc.cli import main

sys.exit(main())
