"""MFM Studio viewer: PySide6 + pyqtgraph desktop app. Imports mfm_engine only."""
