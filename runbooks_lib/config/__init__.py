"""The config room: what a run is configured by, read and validated before anything else.

``profiles`` (an environment's profile and the service catalog), ``parameters`` (a notebook's
declared parameters and their types), ``paths`` (where the project and its files are). Imports
only ``errors`` and ``display`` below it.
"""
