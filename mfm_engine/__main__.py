import sys

from mfm_engine.cli import main

sys.exit(main())
