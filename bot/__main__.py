"""``python -m bot``: same as the ``replbot`` console script."""

import sys

from bot.cli import main

sys.exit(main())
