import sys

from genlearn.cli import main

sys.exit(main())
