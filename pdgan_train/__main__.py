"""`python -m pdgan_train ...` (and `torchrun --nproc_per_node=K -m pdgan_train ...`)."""
import sys

from .cli.train import main

sys.exit(main())
