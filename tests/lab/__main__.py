"""`python -m tests.lab up|down|status|kubeconfig`: the lab's command line (see tests/lab/README.md).

Job: parse the command and call tests.lab.control. Must not: hold any lab logic itself.
"""

import sys

from .control import main

sys.exit(main(sys.argv[1:]))
