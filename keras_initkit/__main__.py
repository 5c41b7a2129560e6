"""`python -m keras_initkit list | compare | diagnose`: the `initkit` command."""
import sys

from .cli import main

sys.exit(main())
