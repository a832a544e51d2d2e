"""Experiment platform: configs, runners, results and the command line."""
