"""Managing a run once it is launched: `status` (cell states reconciled with the scheduler), `progress`
(a running cell's step and ETA), `cost_used` (hours spent per stage), `cancel`, `redo`, `reuse`
(`--reuse-from`), `runs` (`runs`, `compare`), `html_report` (`hpcxlt report`)."""
