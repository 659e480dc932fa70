"""The PoseBench harness: metrics, evaluation, configs, the command line and run records."""
