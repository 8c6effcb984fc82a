"""The AVA annotation workbench (avaforge annotate): label people over time in the browser."""
