"""`python -m hpcxlt.launch.heal RUN_DIR STATUS MAX_RETRIES BACKOFF_S`: the EXIT trap of every sbatch script
hpcxlt writes (`hpcxlt.launch.slurm.exit_trap`, where the code lives).

This module path is written into the batch scripts of jobs already queued, and into the golden sbatch
files: it stays, whatever the code behind it is called.
"""

import sys

from hpcxlt.launch.slurm.exit_trap import main

if __name__ == "__main__":
    sys.exit(main())
