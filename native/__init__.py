"""Compiled hot path of the service (Cython), importable as `qa._native`.

The sources live in the repository's `native/` folder; `qa/_native` is a link to it so that
Cython modules can `cimport` each other by their package names.
"""
