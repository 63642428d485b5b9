"""python -m pdgan_infer.bench: pdgan-bench (the isolated workers run this way)."""
import sys

from ..cli.bench import main

sys.exit(main())
