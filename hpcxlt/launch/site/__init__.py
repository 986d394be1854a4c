"""Where a run goes: Slurm site profiles (`profile`), one written from the cluster itself (`discover`,
`hpcxlt init-site`), and `hpcxlt doctor`'s preflight job (`doctor` on the login node, `preflight` on
every rank)."""
