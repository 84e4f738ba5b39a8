"""python -m datasets.convert: the command line of datasets.convert (see its --help)."""

import sys

from datasets.convert import main

sys.exit(main())
