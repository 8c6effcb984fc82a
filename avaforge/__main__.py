import sys

from avaforge.cli import main

sys.exit(main())
