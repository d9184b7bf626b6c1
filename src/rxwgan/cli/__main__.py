import sys

from rxwgan.cli import main

sys.exit(main())
