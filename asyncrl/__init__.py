"""asyncrl: asynchronous PPO (APPO) with V-trace, built for experience per second."""

__version__ = "0.1.0"
