import sys

from evolink.cli import main

sys.exit(main())
