"""Simulated calibration campaigns: the observations the instrument team calibrated from.

Each module plans and simulates one kind of calibration observation with the
ordinary simulator (same detector, same effects), writing an observation
folder (``raw/`` + ``truth.h5``) whose truth also records, under
``/calibration``, the true maps and scalars the campaign should recover.
"""
