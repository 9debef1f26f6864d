import sys

from genbac.cli import main

sys.exit(main())
