"""The spectune CLI, sweeps and tuning, export writers and plots (DESIGN §1, runner/)."""

__version__ = "0.1.0"
