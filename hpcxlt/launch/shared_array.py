"""`python -m hpcxlt.launch.shared_array FOLDER PICKLE`: what every array task of a Slurm job array runs
(`hpcxlt.launch.slurm.shared_array`, where the code lives).

This module path is written into the batch scripts of jobs already queued, and into the golden sbatch
files: it stays, whatever the code behind it is called.
"""

import sys

from hpcxlt.launch.slurm.shared_array import start

if __name__ == "__main__":
    start(sys.argv[1], sys.argv[2])
