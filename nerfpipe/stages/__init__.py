"""The stages: one module per stage (ingest, poses, report, train, eval, render, export, ...), sharing results through manifests."""
