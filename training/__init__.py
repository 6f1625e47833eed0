"""MFM Studio training: data preparation, Flow Matching / regression / DDPM training, evaluation tables.

``python -m training prepare|phantom-data|fit|evaluate|demo-report`` (see docs/training.md). This
package imports the engine (``mfm_engine``) only, never the viewer or Qt.
"""

__all__: list[str] = []
