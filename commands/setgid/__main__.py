import sys

from pyfix.commands.setgid import main

sys.exit(main())
