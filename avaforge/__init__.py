"""avaforge: videos in, an AVA-format spatio-temporal action dataset out."""

__version__ = "0.1.0"
