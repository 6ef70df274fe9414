"""Tests of the spectune command line (runner/cli/): the contract a user sees."""
